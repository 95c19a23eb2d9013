# An nginx with the poll and select event modules, for t/69-poll.t: Debian
# builds its nginx without them and nginx-dev ships no sources, so the
# sources come from Debian's own archive, the upstream tarball of the nginx
# source package, fetched by apt-get with apt state of its own under
# build/poll/ (nothing of the machine's apt setup changes).  make test
# builds it once; t/69-poll.t runs it (SSE_POLL_NGINX, SSE_POLL_MODULE).

POLL_DIR     := build/poll
POLL_TREE    := $(POLL_DIR)/nginx
POLL_BIN     := $(POLL_TREE)/objs/nginx
POLL_SO      := $(POLL_TREE)/objs/$(MODULE).so
POLL_MIRROR  ?= http://deb.debian.org/debian
POLL_SUITE   ?= bookworm

export SSE_POLL_NGINX  := $(CURDIR)/$(POLL_BIN)
export SSE_POLL_MODULE := $(CURDIR)/$(POLL_SO)

.PHONY: poll-nginx

poll-nginx: $(POLL_BIN)

test: poll-nginx

$(POLL_DIR)/orig.tar.gz:
	@mkdir -p $(POLL_DIR)/apt/lists/partial $(POLL_DIR)/dl
	echo 'deb-src $(POLL_MIRROR) $(POLL_SUITE) main' > $(POLL_DIR)/apt/sources.list
	apt="-o Dir::Etc::SourceList=$(CURDIR)/$(POLL_DIR)/apt/sources.list \
	     -o Dir::Etc::SourceParts=/dev/null \
	     -o Dir::State::Lists=$(CURDIR)/$(POLL_DIR)/apt/lists \
	     -o Dir::Cache::archives=$(CURDIR)/$(POLL_DIR)/dl \
	     -o APT::Sandbox::User=root"; \
	apt-get $$apt update -qq && \
	cd $(POLL_DIR)/dl && apt-get $$apt source --download-only -qq nginx
	mv $(POLL_DIR)/dl/nginx_*.orig.tar.gz $@

$(POLL_BIN): $(POLL_DIR)/orig.tar.gz $(MODULE_CONFIG) $(MODULE_SOURCES)
	rm -rf $(POLL_TREE) && mkdir -p $(POLL_TREE)
	tar -C $(POLL_TREE) --strip-components=1 -xzf $(POLL_DIR)/orig.tar.gz
	cd $(POLL_TREE) && env -u CFLAGS ./configure --with-compat \
	    --with-http_v2_module --with-poll_module --with-select_module \
	    --add-dynamic-module=$(CURDIR) > configure.log 2>&1 \
	    || { tail -n 30 configure.log; exit 1; }
	$(MAKE) -C $(POLL_TREE) -f objs/Makefile binary modules > $(POLL_DIR)/build.log 2>&1 \
	    || { tail -n 30 $(POLL_DIR)/build.log; exit 1; }
	@echo "built $(POLL_BIN) (with poll and select)"
