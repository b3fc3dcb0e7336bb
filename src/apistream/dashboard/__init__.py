"""`apistream dashboard`: a live page over the SQLite database while the stream writes it."""
