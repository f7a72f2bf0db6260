"""Models of the cascade: no Kafka in here.

``stream_app`` and ``workers`` import from this package; it imports neither.
"""
