# `make test` is the one test command: it installs what it needs (Debian
# packages, a virtualenv, the Debian kernel for the test VM), runs the pure
# tests here, then the real-kernel and libvirt tests inside a throwaway VM.
PY      := .venv/bin/python
RESULTS := .cache/results

.PHONY: test setup unit vmtests e2e migration debtest demo bench deb clean

test: setup unit vmtests e2e migration debtest

setup:
	@tests/setup-host

unit: setup
	$(PY) -m pytest -q tests/unit

# Runs pytest on $(1) in one boot of the test VM and checks its junit report
# ($(2)): a skipped or missing real-kernel test fails the suite rather than
# passing it. $(3): seconds the VM may run (VIRT_VLAN_VM_TIMEOUT wins).
define vm_pytest
	@mkdir -p $(RESULTS)
	@rm -f $(RESULTS)/$(2)
	VIRT_VLAN_VM_TIMEOUT=$${VIRT_VLAN_VM_TIMEOUT:-$(3)} tests/vm/run $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider -rfE \
	    --junitxml=$(RESULTS)/$(2) $(1)
	$(PY) tests/vm/check-junit $(RESULTS)/$(2)
endef

# Every test that needs 802.1Q.
vmtests: setup
	$(call vm_pytest,tests/kernel,vm-junit.xml,3000)

# The libvirt end-to-end tests: a real libvirtd, virtlogd and qemu in a
# second boot of the VM (about 25 min under TCG on 2 cores here; a slower
# CI machine has needed more than 50, hence the longer VM limit).
e2e: setup
	$(call vm_pytest,tests/e2e,e2e-junit.xml,4500)

# Guests moving between two libvirtds (namespaces of one VM boot; a few minutes).
migration: setup
	$(call vm_pytest,tests/migration,migration-junit.xml,3600)

demo: setup
	tests/vm/run $(CURDIR)/tests/demo/run

# Figures, not assertions. First on this machine's own CPU (as root), in a
# scratch network namespace (tests/bench/native.py: the paths a kernel
# without 802.1Q supports, beside a bash hook; 1000 bridges and 2000 taps;
# a storm of 50 guests; peak memory). Then in the VM: hook latency, warm
# trunk plug (2 VLANs vs a full trunk), hot-plug to wired (agent), and the
# scale/storm/memory figures on the access path (tests/bench/at_scale.py).
# Python is served from RAM in the VM (tests/vm/py-ram) so they measure the
# hook rather than the VM's 9p root. native.py and at_scale.py measure each
# figure twice: the hook alone, then served by an agent in each namespace
# (AGENT: libvirt's test driver, so no libvirtd is needed).
AGENT := $(CURDIR)/$(PY) -m virtvlan.cli agent -c test:///default

bench: setup
	$(CURDIR)/$(PY) tests/bench/native.py --runs 11 --with-agent '$(AGENT)'
	tests/vm/run /bin/sh -c 'tests/vm/py-ram && $(CURDIR)/$(PY) tests/bench/hook_latency.py --runs 11 && $(CURDIR)/$(PY) tests/bench/trunk_filter.py --runs 11 && $(CURDIR)/$(PY) tests/bench/hotplug.py --runs 5 && exec $(CURDIR)/$(PY) tests/bench/at_scale.py --runs 5 --with-agent "$(AGENT)"'


# The Debian package, built with debhelper/pybuild from a copy of the tree
# (dpkg-buildpackage writes beside the source folder), checked by lintian.
VERSION := $(shell sed -n 's/^version *= *//p' setup.cfg)
DEB     := virt-vlan_$(VERSION)_all.deb
DEBDIR  := .cache/deb
# Debian's own toolchain and python3, whatever else comes first on PATH.
DEB_PATH := /usr/sbin:/usr/bin:/sbin:/bin

deb: setup
	@rm -rf $(DEBDIR) && mkdir -p $(DEBDIR)/virt-vlan-$(VERSION)
	tar -cf - --exclude=./.venv --exclude=./.cache --exclude=./.git --exclude='*.deb' \
	    --exclude='__pycache__' --exclude='*.egg-info' --exclude=./build . | \
	    tar -C $(DEBDIR)/virt-vlan-$(VERSION) -xf -
	cd $(DEBDIR)/virt-vlan-$(VERSION) && PATH=$(DEB_PATH) dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
	    { tail -n 40 ../build.log; exit 1; }
	cp $(DEBDIR)/$(DEB) $(DEB)
	lintian --fail-on error --no-tag-display-limit $(DEB)
	@echo "built $(DEB)"

# The package as an admin gets it: installed with apt in a third boot of the
# VM, the e2e tests marked `installed` run against it, then purged.
debtest: setup deb
	@mkdir -p $(RESULTS)
	@rm -f $(RESULTS)/deb-junit.xml
	tests/vm/run $(CURDIR)/tests/vm/deb-e2e $(CURDIR)/$(DEB) $(RESULTS)/deb-junit.xml
	$(PY) tests/vm/check-junit $(RESULTS)/deb-junit.xml

clean:
	rm -rf .venv .cache build src/*.egg-info *.deb
