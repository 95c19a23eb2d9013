# ngx_http_sse_module: build, run, test.
#
#   make            build build/modules/ngx_http_sse_module.so against Debian's nginx
#   make deps       install whatever of the tool chain is missing
#   make test       deps + build, then prove t/ (not -r: t/node_modules is not ours)
#   make test-valgrind  the same with nginx under valgrind (slow)
#   make run        deps + build, then the demo on http://127.0.0.1:8080/
#   make stop       stop that demo
#   make bench      the benchmark against nchan (bench/), then make soak
#   make soak       the soak alone (mk/soak.mk), SOAK_MINUTES=30
#   make deb        the Debian package (mk/deb.mk)
#   make fuzz       the fuzzers, longer than make test runs them (mk/fuzz.mk)
#   make test-browser  the Chromium tests alone (mk/browser.mk)
#   make poll-nginx an nginx with poll/select for t/69-poll.t (mk/poll.mk)
#   make clean      remove build/
#
#   make NGINX_SRC=/path/to/nginx      build (and test, run) against an
#                                      upstream nginx source tree instead

SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

MODULE      := ngx_http_sse_module
NGINX_SRC   ?=

# Debian packages the build, the tests, the demo and the benchmark need.
# gcc, libc6-dev and curl are not pulled in by the others with
# --no-install-recommends; python3-prometheus-client is the parser
# t/15-status.t reads the Prometheus answer with.
DEB_PACKAGES := nginx nginx-dev libhiredis-dev redis-server libnginx-mod-nchan \
                wrk valgrind nodejs npm gcc libc6-dev make perl curl openssl \
                python3-prometheus-client

# Every input of the module: a change to any of them rebuilds the .so.
MODULE_SOURCES := $(wildcard $(CURDIR)/*.c $(CURDIR)/*.h)
MODULE_CONFIG  := $(CURDIR)/config

ifeq ($(strip $(NGINX_SRC)),)
  SRC_DIR     := build/nginx-src
  MOD_DIR     := build/modules
  NGX_TARGETS := modules
  NGINX_BIN   ?= /usr/sbin/nginx
else
  NGINX_SRC_ABS := $(abspath $(NGINX_SRC))
  SRC_DIR     := build/upstream-src
  MOD_DIR     := build/modules-upstream
  # a module built against another nginx only loads into that nginx, so
  # the binary is built too: tests and the demo run with it
  NGX_TARGETS := binary modules
  NGINX_BIN   ?= $(CURDIR)/$(SRC_DIR)/objs/nginx
  UPSTREAM_CONF_FLAGS ?= --with-compat --with-http_v2_module
endif

SO      := $(MOD_DIR)/$(MODULE).so
RUN_DIR := $(CURDIR)/build/run

# for the tests (t/lib reads these)
export SSE_MODULE := $(CURDIR)/$(SO)
export NGINX_BIN

.DEFAULT_GOAL := build
# deps must finish before build starts, even under make -j (nginx's own
# make, below, still runs in parallel when -j is given)
.NOTPARALLEL:
.PHONY: build deps test test-valgrind test-valgrind-ci run stop bench clean FORCE

build: $(SO)

# ---------------------------------------------------------------- deps

deps:
	@missing=(); \
	for p in $(DEB_PACKAGES); do \
	    case "$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null)" in \
	        "install ok installed") ;; \
	        *) missing+=("$$p") ;; \
	    esac; \
	done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	    provided=" $$(dpkg-query -W -f='$${db:Status-Abbrev}|$${Provides}\n' 2>/dev/null \
	        | awk -F'|' '$$1 ~ /^ii/ { print $$2 }' \
	        | sed 's/([^)]*)//g' | tr ',' '\n' | tr -d ' ' | sort -u | tr '\n' ' ')"; \
	    left=(); \
	    for p in "$${missing[@]}"; do \
	        case "$$provided" in *" $$p "*) ;; *) left+=("$$p") ;; esac; \
	    done; \
	    missing=("$${left[@]}"); \
	fi; \
	if [ $${#missing[@]} -gt 0 ]; then \
	    sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	    echo "deps: installing $${missing[*]}"; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q \
	        --no-install-recommends "$${missing[@]}" || exit 1; \
	fi
	@if [ -f t/package.json ] && { [ ! -d t/node_modules ] \
	        || [ t/package.json -nt t/node_modules ] \
	        || { [ -f t/package-lock.json ] && [ t/package-lock.json -nt t/node_modules ]; }; }; then \
	    echo "deps: npm install --prefix t"; \
	    npm install --prefix t --no-audit --no-fund && touch t/node_modules; \
	fi

# --------------------------------------------------------------- build

# When config or the .c/.h files are missing, say so instead of
# "No rule to make target".
$(MODULE_CONFIG):
	@echo "error: $@ is missing (the module's nginx config file)" >&2; exit 1

ifeq ($(strip $(NGINX_SRC)),)

# Debian's copy of the nginx source it was built from, configured with the
# same flags (conf_flags), so the module loads into /usr/sbin/nginx.
$(SRC_DIR)/configure:
	@test -d /usr/share/nginx/src || { echo "error: /usr/share/nginx/src is missing: run make deps (package nginx-dev)" >&2; exit 1; }
	rm -rf $(SRC_DIR) $(SRC_DIR).tmp
	mkdir -p build
	cp -a /usr/share/nginx/src $(SRC_DIR).tmp
	mv $(SRC_DIR).tmp $(SRC_DIR)

# CFLAGS is unset because nginx's configure drops its own warning flags
# (-W -Wall -Wpointer-arith -Werror) when CFLAGS is set in the environment.
# -O2 as Debian's own nginx build (nginx -V); nginx alone would use -O.
$(SRC_DIR)/objs/Makefile: $(MODULE_CONFIG) $(SRC_DIR)/configure Makefile
	cd $(SRC_DIR) && rm -f objs/Makefile && \
	    env -u CFLAGS bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc-opt=-O2 --add-dynamic-module=$(CURDIR)' \
	    > configure.log 2>&1 || { tail -n 30 configure.log; rm -f objs/Makefile; exit 1; }
	@grep -q -- '-Werror' $@ || { \
	    echo "nginx's configure did not add -Werror: adding --with-cc-opt=-Werror"; \
	    cd $(SRC_DIR) && rm -f objs/Makefile && \
	    env -u CFLAGS bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc-opt="-O2 -Werror" --add-dynamic-module=$(CURDIR)' \
	    > configure.log 2>&1 || { tail -n 30 configure.log; rm -f objs/Makefile; exit 1; }; }
	@echo "configured $(SRC_DIR) (log: $(SRC_DIR)/configure.log)"

else

# An upstream tree: from git it has auto/configure, a release tarball has
# ./configure.  It is copied (without .git) so the tree itself stays clean;
# the copy is redone when NGINX_SRC names another tree.
build/.upstream-src-path: FORCE
	@mkdir -p build
	@echo '$(NGINX_SRC_ABS)' | cmp -s - $@ || echo '$(NGINX_SRC_ABS)' > $@

$(SRC_DIR)/.copied: build/.upstream-src-path
	@test -f '$(NGINX_SRC_ABS)/src/core/nginx.h' || { echo "error: NGINX_SRC=$(NGINX_SRC) is not an nginx source tree" >&2; exit 1; }
	rm -rf $(SRC_DIR) $(SRC_DIR).tmp
	mkdir -p $(SRC_DIR).tmp
	tar -C '$(NGINX_SRC_ABS)' --exclude=.git --exclude=./objs --exclude=./Makefile -cf - . | tar -C $(SRC_DIR).tmp -xf -
	mv $(SRC_DIR).tmp $(SRC_DIR)
	touch $@

$(SRC_DIR)/objs/Makefile: $(MODULE_CONFIG) $(SRC_DIR)/.copied
	cd $(SRC_DIR) && rm -f objs/Makefile && \
	    if [ -f auto/configure ]; then conf=auto/configure; else conf=configure; fi && \
	    env -u CFLAGS bash "./$$conf" $(UPSTREAM_CONF_FLAGS) --add-dynamic-module=$(CURDIR) \
	    > configure.log 2>&1 || { tail -n 30 configure.log; rm -f objs/Makefile; exit 1; }
	@grep -q -- '-Werror' $@ || { \
	    echo "nginx's configure did not add -Werror: adding --with-cc-opt=-Werror"; \
	    cd $(SRC_DIR) && rm -f objs/Makefile && \
	    if [ -f auto/configure ]; then conf=auto/configure; else conf=configure; fi && \
	    env -u CFLAGS bash "./$$conf" $(UPSTREAM_CONF_FLAGS) --with-cc-opt=-Werror --add-dynamic-module=$(CURDIR) \
	    > configure.log 2>&1 || { tail -n 30 configure.log; rm -f objs/Makefile; exit 1; }; }
	@echo "configured $(SRC_DIR) against $(NGINX_SRC_ABS) (log: $(SRC_DIR)/configure.log)"

endif

$(SO): $(SRC_DIR)/objs/Makefile $(MODULE_CONFIG) $(MODULE_SOURCES)
	$(MAKE) -C $(SRC_DIR) -f objs/Makefile $(NGX_TARGETS)
	@mkdir -p $(MOD_DIR)
	cp $(SRC_DIR)/objs/$(MODULE).so $@.tmp
	mv $@.tmp $@
	@echo "built $(SO)"

# ---------------------------------------------------------------- test

# TEST_DIRS: prove's arguments; mk/*.mk add theirs (t/browser, ...)
TEST_DIRS := t/

test: deps build
	prove $(TEST_DIRS)

# the suite with nginx and its workers under valgrind's memcheck (slow, not
# part of make test): fails on any invalid access or definite leak with a
# ngx_http_sse_ frame.  The load and npm tests are left out; a small
# freelist keeps t/14-memory's RSS figures meaningful.
VALGRIND_ENV := SSE_VALGRIND=1 \
    SSE_VALGRIND_OPTS='--freelist-vol=100000 --freelist-big-blocks=100000'

# not under valgrind: the load, npm, fuzzer, package and browser tests
VALGRIND_SKIP := t/40-bench.t t/eventsource.t t/90-fuzz.t t/80-deb.t \
                 t/62-sub-memory.t t/85-make-run.t

test-valgrind: deps build
	$(VALGRIND_ENV) prove $(filter-out $(VALGRIND_SKIP),$(wildcard t/*.t))

# what CI runs under valgrind besides make test: the files whose paths
# allocate and free (replay pieces, blocks, takeover, several channels,
# error pages, the stats stream, Redis's links and entries)
VALGRIND_CI := t/05-resume.t t/06-multichannel.t t/10-channel-admin.t \
               t/13-disconnect.t t/15-status.t t/64-replay-bounded.t \
               t/66-multichannel-stop.t t/71-error-pages.t t/50-redis-log.t \
               t/50-redis-replies.t t/50-redis-resume-behind.t \
               t/50-redis-clock-start.t t/50-redis-time-garbage.t

test-valgrind-ci: deps build
	$(VALGRIND_ENV) prove $(VALGRIND_CI)

# --------------------------------------------------------------- bench

# the full side-by-side run against nchan; BENCH_ARGS are run.pl's options
# (--quick, --scenarios 1,3, --targets sse)
bench: deps build
	$(MAKE) -C bench BENCH_ARGS='$(BENCH_ARGS)'
	$(MAKE) --no-print-directory soak

# --------------------------------------------------------------- clean

clean:
	rm -rf build

# ------------------------------------------------------------ includes

# each concern adds its targets, packages (DEB_PACKAGES +=) and test
# folders (TEST_DIRS +=) in a file of its own
include $(sort $(wildcard mk/*.mk))
