# `make test` is the one test command: it installs what it needs (Debian
# packages, a virtualenv, the Debian kernel for the test VM), runs the pure
# tests here, then the real-kernel and libvirt tests inside a throwaway VM.
PY      := .venv/bin/python
RESULTS := .cache/results

.PHONY: test setup unit vmtests e2e demo bench clean

test: setup unit vmtests e2e

setup:
	@tests/setup-host

unit: setup
	$(PY) -m pytest -q tests/unit

# Runs pytest on $(1) in one boot of the test VM and checks its junit report
# ($(2)): a skipped or missing real-kernel test fails the suite rather than
# passing it.
define vm_pytest
	@mkdir -p $(RESULTS)
	@rm -f $(RESULTS)/$(2)
	tests/vm/run $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider -rfE \
	    --junitxml=$(RESULTS)/$(2) $(1)
	$(PY) tests/vm/check-junit $(RESULTS)/$(2)
endef

# Every test that needs 802.1Q.
vmtests: setup
	$(call vm_pytest,tests/kernel,vm-junit.xml)

# The libvirt end-to-end tests: a real libvirtd, virtlogd and qemu in a
# second boot of the VM (about 25 min under TCG on 2 cores).
e2e: setup
	$(call vm_pytest,tests/e2e,e2e-junit.xml)

demo: setup
	tests/vm/run $(CURDIR)/tests/demo/run

# Figures, not assertions; Python is served from RAM in the VM (tests/vm/py-ram)
# so they measure the hook rather than the VM's 9p root.
bench: setup
	tests/vm/run /bin/sh -c 'tests/vm/py-ram && $(CURDIR)/$(PY) tests/bench/hook_latency.py --runs 11 && exec $(CURDIR)/$(PY) tests/bench/hotplug.py --runs 5'


clean:
	rm -rf .venv .cache build src/*.egg-info
