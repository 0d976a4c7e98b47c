# imaging_db: `make demo` runs the tool end to end on the embedded default; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_HOME := $(CURDIR)/demo_home
DEMO_ID := ML-2018-11-07-09-35-54-0010

.PHONY: install demo test test-large bench clean

# PYTHONWARNINGS=ignore: setuptools warns at length about editable installs, nothing to act on.
# editable_mode=compat: a plain path entry, no import hook to load at every start of the CLIs.
$(VENV)/.installed: requirements.txt requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --config-settings editable_mode=compat -e .
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf demo_data demo_home demo_download
	$(PY) examples/make_demo_data.py demo_data
	IMAGING_DB_HOME=$(DEMO_HOME) $(VENV)/bin/data_uploader --csv files_for_upload.csv --config config.json
	IMAGING_DB_HOME=$(DEMO_HOME) $(VENV)/bin/data_downloader --id $(DEMO_ID) --dest demo_download -c GFP -z 1 2 -t 0 -p 0 1
	IMAGING_DB_HOME=$(DEMO_HOME) $(PY) examples/show_demo.py demo_download/$(DEMO_ID)

# On every core (pytest-xdist): each test makes its own databases, folders and buckets.
test: install
	$(PY) -m pytest -n auto --dist loadgroup $(PYTEST_ARGS)

# Only the tests marked large: a BigTIFF over 4 GiB round trip, each CLI's wall time and peak RSS printed.
# Needs about 9 GB free under the temporary folder, removed afterwards.
test-large: install
	$(PY) -m pytest -m large -s tests/large $(PYTEST_ARGS)

# Upload/download both workloads on SQLite and PostgreSQL (and S3 on moto), time 100,000 frame rows in
# PostgreSQL, measure the PNG options; query_data on 1,000 datasets / 100,000 frames; the Python API's
# get_stack against the decode floor (local and S3). Results are appended to benchmarks/RESULTS.md.
bench: install
	$(PY) benchmarks/bench.py --workload all --s3 --rows 100000 $(BENCH_ARGS)
	cd benchmarks && ../$(PY) png_settings.py
	$(PY) benchmarks/bench_query.py
	$(PY) benchmarks/bench_api.py

clean:
	rm -rf $(VENV) demo_data demo_home demo_download *.egg-info .pytest_cache
