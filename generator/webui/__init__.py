"""The web UI's logic, kept out of ``app.py`` so it can be tested without a browser.

``studio`` owns the models, ``forms`` maps widgets to configs, ``jobs`` turns runs into UI
updates and writes outputs, ``gallery`` reads past runs. ``app.py`` only lays out widgets.
"""
