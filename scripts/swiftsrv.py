#!/usr/bin/python3
"""Run one Swift WSGI server with swift.conf read from SWIFT_DIR instead of /etc/swift.

Usage: /usr/bin/python3 scripts/swiftsrv.py SWIFT_DIR CONF_FILE SECTION
SECTION is proxy-server, account-server, container-server or object-server.

It runs under Debian's python3 because python3-swift lives in /usr/lib/python3/dist-packages,
which the project's virtualenv cannot see; scripts/swift-s3 starts it.
"""

import os
import sys


def main(argv: list[str]) -> int:
    swift_dir, conf, section = argv[1:4]
    # Imported here: swift exists only for /usr/bin/python3, and the storage policies must be
    # reloaded after set_swift_dir because importing swift reads /etc/swift/swift.conf.
    from swift.common import utils  # type: ignore[import-not-found]

    utils.set_swift_dir(os.path.abspath(swift_dir))
    from swift.common.storage_policy import reload_storage_policies  # type: ignore[import-not-found]

    reload_storage_policies()
    from swift.common.wsgi import run_wsgi  # type: ignore[import-not-found]

    return int(run_wsgi(os.path.abspath(conf), section, verbose=True))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
