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


def main() -> int:
    xml = sys.stdin.buffer.read()
    if b"urn:virt-vlan:1" not in xml:
        return 0
    import site

    site.main()
    from virtvlan.hook import run

    # Installed as <hooks>/qemu.d/virt-vlan or network.d/virt-vlan; in the
    # repository as hooks/qemu and hooks/network.
    here = os.path.basename(sys.argv[0])
    driver = here if here in ("qemu", "network") else \
        os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0])))[:-2]
    return run(driver, sys.argv[1:], xml)


if __name__ == "__main__":
    sys.exit(main())
