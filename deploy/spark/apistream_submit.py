"""The entry point spark-submit runs on a cluster (`apistream deploy` uploads it):

    spark-submit [--conf ...] apistream_submit.py stream --config /opt/apistream/config.yaml

The same as the `apistream` command; the package is installed on the driver's node.
"""

from apistream.cli import main

if __name__ == "__main__":
    main()
