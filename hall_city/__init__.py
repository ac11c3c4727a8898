"""hall-city: the city's view of every hall (issue 20, DESIGN §11).

One MQTT client of the city broker (`city/+/+/#`), a pure reducer of what the halls publish into the
latest state per hall (state.py), a 5-minute history in PostgreSQL or SQLite (history.py), and the
大屏 page pushed by SSE (server.py, pages.py). `hall-city --demo` runs a city broker, three demo halls
and the page on one PC (demo.py).
"""
