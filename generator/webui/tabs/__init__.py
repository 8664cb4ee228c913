"""The web UI's tabs: each module lays out one tab and wires its events over a shared
:class:`~generator.webui.tabs.page.Page`; ``app.py`` puts them together."""
