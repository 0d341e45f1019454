# make demo   set up, then render what the agent sees (until the full pipeline lands)
# make test   set up, then run the test suite
VENV ?= .venv
# Data: $VAI_DATA_DIR if set, else the benchmark data beside this checkout, else vai's cache folder.
export VAI_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
STAMP := $(VENV)/.vai-installed
VAI := $(VENV)/bin/vai
DEMO_OUT ?= gallery

.PHONY: setup demo test
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

demo: setup
	$(VAI) data verify colors video_easy video_hard drawerworld >/dev/null || $(VAI) data fetch colors video_easy video_hard drawerworld
	$(VAI) env show walker_walk --out $(DEMO_OUT)/walker_walk.png
	$(VAI) env show cartpole_balance --every 3 --out $(DEMO_OUT)/cartpole_balance.png
	$(VAI) env show drawer_open --frames 3 --out $(DEMO_OUT)/drawer_open.png
	@echo "demo: open $(DEMO_OUT)/*.png"

test: setup
	$(VENV)/bin/python -m pytest -q
