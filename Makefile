# make demo      set up, then run the whole VAI pipeline on cartpole_balance (quick preset, about 18 min on 2 cores)
# make test      set up, then run the test suite
# make gallery   set up, then render what the agent sees in every test mode
VENV ?= .venv
# Data: $VAI_DATA_DIR if set, else the benchmark data beside this checkout, else vai's cache folder.
export VAI_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
STAMP := $(VENV)/.vai-installed
VAI := $(VENV)/bin/vai
DEMO_RUN ?= runs/cartpole_balance-quick
GALLERY ?= gallery

.PHONY: setup demo gallery data test
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

demo: setup data
	$(VAI) run cartpole_balance --preset quick --run $(DEMO_RUN)
	@echo "demo: open $(DEMO_RUN)/report.md"

gallery: setup data
	$(VAI) env show walker_walk --out $(GALLERY)/walker_walk.png
	$(VAI) env show cartpole_balance --every 3 --out $(GALLERY)/cartpole_balance.png
	$(VAI) env show drawer_open --frames 3 --out $(GALLERY)/drawer_open.png
	@echo "gallery: open $(GALLERY)/*.png"

data: setup
	$(VAI) data verify colors video_easy video_hard drawerworld >/dev/null || $(VAI) data fetch colors video_easy video_hard drawerworld

test: setup
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile
