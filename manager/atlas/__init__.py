"""The generation product (seeds 000 and 001): accounts, the job API, the job driver and
the progress WebSocket. A client of the session layer (DESIGN decision 12)."""
