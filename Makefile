# Two entry points for a fresh machine:  `make run`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run demo test lint bench clean

CLEARANCE_POLICY ?= examples/policy.yaml
export CLEARANCE_POLICY

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Without a Slack workspace: validate the example policy and show who would approve.
demo: setup
	$(VENV)/bin/clearance policy check $(CLEARANCE_POLICY)
	$(VENV)/bin/clearance policy explain --policy examples/policy.yaml \
		--requester alice@example.com --resource prod-db-admin

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
