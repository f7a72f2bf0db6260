"""Teacher workers: scale them on their own, one consumer group on the teacher topic."""
