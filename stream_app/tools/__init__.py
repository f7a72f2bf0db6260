"""The ``tango`` command and the operator tools: CLI, demo, benchmarks, local runs, the local
broker and the dead-letter tool. The only package that imports ``workers``; nothing in the
pipeline imports it.
"""
