"""Staging rehearsal: the asset whose materialisations hold what each rehearsal measured."""
