# Two entry points for a fresh machine:  `make run`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run demo test lint bench clean

CLEARANCE_POLICY ?= examples/policy.yaml
export CLEARANCE_POLICY

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "setup: creating $(VENV) and installing Clearance with its test tools (a minute or two the first time)..."
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@echo "setup: done; the clearance command is $(VENV)/bin/clearance"
	touch $@

# Without a Slack workspace: check the policy (CLEARANCE_POLICY) and show who would approve a
# sample request. The sample names people of the example policy; for your own policy set
# DEMO_REQUESTER and DEMO_RESOURCE to one of yours (or leave them empty to skip it).
ifeq ($(CLEARANCE_POLICY),examples/policy.yaml)
DEMO_REQUESTER ?= alice@example.com
DEMO_RESOURCE ?= prod-db-admin
endif
demo: setup
	$(VENV)/bin/clearance policy check $(CLEARANCE_POLICY)
ifneq ($(and $(DEMO_REQUESTER),$(DEMO_RESOURCE)),)
	$(VENV)/bin/clearance policy explain --policy $(CLEARANCE_POLICY) \
		--requester $(DEMO_REQUESTER) --resource $(DEMO_RESOURCE)
else
	@echo "demo: set DEMO_REQUESTER and DEMO_RESOURCE to see who would approve a request under $(CLEARANCE_POLICY)"
endif

# Serve: Slack at /slack/events (when SLACK_* are set), Teams at /api/messages (when TEAMS_*
# are set), /healthz, /metrics, the dispatcher.
run: demo
	$(VENV)/bin/clearance serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict engine storage bot adapters message_templates

test: setup
	bash scripts/test-services.sh
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
