"""Teacher workers, scaled on their own: one consumer group on the teacher topic.

``teacher_stage`` is the teacher stage (request parsing, results) and its assembly from a
bundle; ``teacher_worker`` the consume → batch → infer → produce → commit loop. Imports the
``stream_app`` core and ``kafka_io`` and ``models``; never ``stream_app.tools`` or the Faust
stream worker.
"""
