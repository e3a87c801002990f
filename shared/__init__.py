"""Machinery every Klaspost service uses: settings, app factory, errors, database, events, auth."""
