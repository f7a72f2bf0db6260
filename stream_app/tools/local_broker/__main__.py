import sys

from stream_app.tools.local_broker.cli import main

sys.exit(main())
