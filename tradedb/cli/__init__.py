"""The ``tradedb`` command line, on top of everything: one module per verb group, registered in ``main``.

``base`` holds the group and what verbs share; ``schema``, ``data``, ``deploy``, ``window``, ``backup``,
``monitoring`` and ``new`` hold the verbs; ``progress`` draws a data migration's progress bar. May import every layer below
(``orchestration`` only to launch jobs); nothing imports this package.
"""
