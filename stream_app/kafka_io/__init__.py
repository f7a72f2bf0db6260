"""What talks to a broker: one Settings → client translation (``clients``), the connection
probe, topic creation, per-partition transactions with the one shared exactly-once batch
step, and the merge window's read-back. May import ``stream_app`` core modules, never
``stream_app.tools`` or ``workers``.
"""
