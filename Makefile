# changeover: `make demo` runs a live rollout on this machine, `make test` runs the suite.
# Both install what they need first (a virtualenv in .venv with pinned-enough packages).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The documentation site (mkdocs.yml): `make docs` builds it into site/; `make lint` builds it
# strictly, so a broken link, anchor or generated page fails the checks (and `make test`).
.PHONY: docs demo test unit lint check bench clean fast dashboard deps-chromium crash-long fuzz deps-nginx deps-prometheus deps-bench deps-haproxy k8s-testbed bench-k8s bench-analysis image deps-image deps-kubectl

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# tools/build_fast.py runs setup() with the venv's own setuptools: pyproject's SPDX
	# `license` needs 77 or later (a bare venv of Python 3.11 brings 65).
	$(BIN)/pip install -q --upgrade pip "setuptools>=77"
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The builtin proxy's hot path compiled with mypyc (changeover/traffic/builtin/compiled.py
# says which modules and why): rebuilt when a source changes; without a C compiler the
# proxy runs as plain Python. The digest file is written last, so a failed build is unused.
FAST := changeover/traffic/builtin/fast__mypyc.sources
FAST_SRC := $(wildcard changeover/traffic/builtin/*.py)
$(FAST): $(STAMP) $(FAST_SRC) tools/build_fast.py
	$(BIN)/python tools/build_fast.py

fast: $(FAST)

demo: $(STAMP) $(FAST) dashboard
	$(BIN)/changeover demo

# The dashboard (served by serve under /dashboard/): its front-end dependencies (uPlot,
# esbuild) come from the npm registry at build time, pinned by dashboard/package-lock.json;
# the bundle lands in changeover/api/dashboard_assets/ (gitignored). Rebuilt when a source
# or the lock changes; the stamp is written last, so a failed build is rebuilt next time.
DASHBOARD := changeover/api/dashboard_assets/index.html
NODE_MODULES := dashboard/node_modules/.package-lock.json
$(NODE_MODULES): dashboard/package.json dashboard/package-lock.json
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_MODULES)

$(DASHBOARD): $(NODE_MODULES) $(wildcard dashboard/src/*) dashboard/build.mjs
	cd dashboard && npm run --silent build
	touch $(DASHBOARD)

dashboard: $(DASHBOARD)

# The dashboard's browser tests drive Debian's chromium through Playwright (whose own
# browser download cannot work here); installed only when missing.
deps-chromium:
	@command -v chromium >/dev/null 2>&1 || for try in 1 2 3; do \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y chromium \
	  && break; \
	  [ $$try = 3 ] && exit 1; sleep 5; \
	done

# The prometheus provider's tests run a real Prometheus server (Debian's package); install it
# only when missing. The lock timeout waits out another apt-get instead of failing CI, and a
# flaky mirror gets three tries.
deps-prometheus:
	@command -v prometheus >/dev/null 2>&1 || for try in 1 2 3; do \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y prometheus \
	  && break; \
	  [ $$try = 3 ] && exit 1; sleep 5; \
	done

# The haproxy router (traffic: {haproxy: {}}) drives Debian's HAProxy (2.6 on bookworm); its
# tests run a real one. Installed only when missing (Debian puts it in /usr/sbin).
deps-haproxy:
	@command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || { \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y haproxy; }

# The Kubernetes tests (tests/kubernetes) run a real kube-apiserver 1.20 built from Debian's
# source by ../shared/k8s-testbed: about 11 minutes the first time on 2 cores, cached in
# $(K8S_TESTBED_DIR) (outside the repo), nothing later. The session's pytest fixture starts
# the cluster and stops it by PID.
K8S_TESTBED_DIR ?= $(HOME)/.cache/k8s-testbed
export K8S_TESTBED_DIR
k8s-testbed:
	bash tests/kubernetes/build-testbed.sh

# The suite runs the image's entrypoint from its own files (tests/kubernetes/test_install.py):
# with CHANGEOVER_REQUIRE_IMAGE a missing image fails instead of skipping.
test: $(STAMP) $(FAST) dashboard deps-chromium deps-prometheus deps-haproxy deps-nginx k8s-testbed deps-kubectl image
	$(MAKE) lint
	CHANGEOVER_REQUIRE_IMAGE=1 $(BIN)/pytest -q

# The crash suite's long mode: kill -9 of serve at 100 random moments over every strategy,
# each run against an uninterrupted twin (make test runs a bounded count).
crash-long: $(STAMP) $(FAST)
	CHANGEOVER_CRASH_ALL=1 CHANGEOVER_CRASH_KILLS=25 $(BIN)/pytest -q -s \
	  tests/e2e/test_e2e_crash_suite.py

unit: $(STAMP) $(FAST) dashboard
	$(BIN)/pytest -q -m 'not slow'

# The long mode of the suite's generated cases (make test runs ~100 per property): 10,000
# generated specs and condition expressions (tests/property), randomized on every run; and
# 10,000 generated HTTP streams through the builtin router and nginx (make test: 200),
# compared for desync (tests/traffic/http_fuzz.py).
fuzz: $(STAMP) $(FAST) deps-nginx
	CHANGEOVER_FUZZ_EXAMPLES=10000 $(BIN)/pytest -q -p no:cacheprovider tests/property
	CHANGEOVER_FUZZ_CASES=10000 $(BIN)/pytest -q -s -p no:cacheprovider \
	  tests/traffic/test_router_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check changeover tests examples bench tools
	$(BIN)/ruff format --check changeover tests examples bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(DOCS_CHECK_DIR)
	rm -rf $(DOCS_CHECK_DIR)

# The strict build of `make lint` writes to a scratch directory, leaving site/ to `make docs`.
DOCS_CHECK_DIR := .docs-check
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The differential HTTP fuzzer compares the builtin router with Debian's nginx.
deps-nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y nginx; }

# The data-plane benchmark (bench/README.md) loads proxies with wrk and compares against
# nginx and HAProxy: Debian's packages, installed only when missing.
deps-bench:
	@command -v nginx >/dev/null 2>&1 && command -v haproxy >/dev/null 2>&1 && \
	  command -v wrk >/dev/null 2>&1 || { \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
	    nginx haproxy wrk; }

bench: $(STAMP) $(FAST) deps-bench
	$(BIN)/python -m bench.run

# N Rollouts progressing at once against the k8s testbed (bench/RESULTS.md "## Kubernetes scale").
bench-k8s: $(STAMP) k8s-testbed
	$(BIN)/python -m bench.k8s_scale --rollouts 100 --rollouts 1000

# A bad canary under 200 requests/s: time until all traffic is back on stable and the share of
# requests it served (bench/RESULTS.md "## Blast radius"); about 4 minutes.
bench-analysis: $(STAMP) $(FAST)
	$(BIN)/python -m bench.blast_radius

# The OCI image of the operator and CLI (tools/build_image.py says how): Debian's debootstrap
# and buildah, no container registry; writes dist/changeover-<version>-g<commit>.oci.tar.
image: $(STAMP) $(FAST) deps-image
	$(BIN)/python tools/build_image.py

deps-image:
	@command -v debootstrap >/dev/null 2>&1 && command -v buildah >/dev/null 2>&1 || { \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
	    debootstrap buildah; }

# kubectl for `kubectl apply -k` of deploy/kubernetes and the kubectl plugin's tests.
deps-kubectl:
	@command -v kubectl >/dev/null 2>&1 || { \
	  apt-get -o DPkg::Lock::Timeout=600 update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
	    kubernetes-client; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site $(DOCS_CHECK_DIR)
	rm -f changeover/traffic/builtin/*.so $(FAST)
	rm -rf dashboard/node_modules changeover/api/dashboard_assets
	rm -rf dist
