#!/usr/bin/python3 -IS
# virt-vlan libvirt hook drop-in (one file for the qemu and network drivers).
# It lives in the package as virtvlan/dropin.py (hooks/qemu and hooks/network
# link to it); `virt-vlan install-hooks` copies it into <hooks>/qemu.d/ and network.d/,
# with the line above pointing at the interpreter virt-vlan is installed for.
"""Wire guests with virt-vlan metadata; leave every other guest alone, fast.

-S (in -IS) skips site-packages at start-up: an untagged domain costs one read of
stdin and one substring test. Only tagged documents load site and the package.
"""
import os
import sys


# The operations virt-vlan acts on (hook.py); for any other the drop-in
# exits before loading anything: started/stopped come on every guest start
# and stop and need no work from us.
OPS = {"qemu": {"prepare", "start", "reconnect", "attach", "release", "migrate", "restore"},
       "network": {"start", "stopped"}}


def main() -> int:
    # Read stdin even when we have nothing to do, so libvirt's write of the
    # XML never meets a closed pipe.
    xml = sys.stdin.buffer.read()
    # Installed as <hooks>/qemu.d/virt-vlan or network.d/virt-vlan; in the
    # repository as hooks/qemu and hooks/network.
    here = os.path.basename(sys.argv[0])
    driver = here if here in OPS else \
        os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0])))[:-2]
    if len(sys.argv) < 3 or sys.argv[2] not in OPS.get(driver, ()):
        return 0
    if b"urn:virt-vlan:1" not in xml:
        return 0
    import site

    site.main()
    try:
        from virtvlan.hook import run
    except ImportError as err:
        # The package is gone but this drop-in stayed: a Debian `apt remove`
        # keeps conffiles until purge. Wiring cannot be promised, so a tagged
        # guest is refused (libvirt shows this line) rather than started on
        # the wrong network; untagged guests never get here.
        sys.stderr.write("virt-vlan: this hook (%s) cannot load the virt-vlan package (%s); "
                         "reinstall virt-vlan, or remove the hook (apt purge virt-vlan)\n"
                         % (sys.argv[0], err))
        return 1
    return run(driver, sys.argv[1:], xml)


if __name__ == "__main__":
    sys.exit(main())
