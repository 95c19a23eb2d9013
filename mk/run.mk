# make run / make stop: the demo on http://127.0.0.1:$(RUN_PORT)/ (included
# by Makefile).  make run RUN_PORT=8081 when 8080 is taken.
#
# Where its files are, and why:
#
#   build/run/                     in the clone: nginx.conf, nginx.pid,
#                                  logs/.  Only nginx's master process opens
#                                  these, as the user who ran make run.
#   /tmp/ngx-sse-demo.XXXXXX/      outside the clone, new for each run,
#                                  removed by make stop: html/, a copy of
#                                  conf-examples/demo/, and tmp/, nginx's
#                                  temp files (request bodies).  Its path is
#                                  in build/run/www.
#
# Run as root, nginx's workers run as "nobody" (nginx's default `user`).  A
# clone in a private home (/root is mode 700 on Debian, as is any mktemp -d
# folder) is out of their reach: the page answered 403, and a publish whose
# body goes to a temp file (more than client_body_buffer_size, 16k) answered
# 500.  So what the workers read and write is put where they can reach it,
# and they stay unprivileged.  The other fix, `user root;` (or the clone's
# owner) when make run runs as root, would keep the page live in the clone
# but make the demo's HTTP server run as root, which is no example to copy.
# Run as an ordinary user, the workers run as that user and the copy is not
# needed, but it is made all the same: one way to run, whoever runs it.
#
# The folder is made by mktemp -d (mode 700, then 755) in /tmp itself, not
# in $TMPDIR (pam_tmpdir points that to a private folder too): a fixed name
# in /tmp could be made beforehand, or be a link, by another user.
#
# After editing conf-examples/demo/, make run again: it copies the page anew.

RUN_PORT ?= 8080
RUN_URL  := http://127.0.0.1:$(RUN_PORT)

run: deps build
	@$(MAKE) --no-print-directory stop >/dev/null
	@mkdir -p $(RUN_DIR)/logs
	@www=$$(mktemp -d /tmp/ngx-sse-demo.XXXXXX) || exit 1; \
	echo "$$www" > $(RUN_DIR)/www; \
	chmod 755 "$$www" && mkdir -m 755 "$$www/tmp" \
	&& cp -R conf-examples/demo "$$www/html" && chmod -R u+rwX,go+rX,go-w "$$www/html" \
	&& sed -e 's|@MODULE@|$(CURDIR)/$(SO)|g' \
	       -e 's|@DIR@|$(RUN_DIR)|g' \
	       -e "s|@HTML@|$$www/html|g" \
	       -e "s|@TMP@|$$www/tmp|g" \
	       -e 's|@PORT@|$(RUN_PORT)|g' \
	       conf-examples/demo.conf > $(RUN_DIR)/nginx.conf
	@$(NGINX_BIN) -p $(RUN_DIR) -c $(RUN_DIR)/nginx.conf -t -q || { \
	    $(MAKE) --no-print-directory stop >/dev/null; exit 1; }
	@$(NGINX_BIN) -p $(RUN_DIR) -c $(RUN_DIR)/nginx.conf || { \
	    echo "nginx did not start (is port $(RUN_PORT) taken? make run RUN_PORT=8081); see $(RUN_DIR)/logs/error.log" >&2; \
	    $(MAKE) --no-print-directory stop >/dev/null; exit 1; }
	@code=$$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 $(RUN_URL)/); \
	if [ "$$code" != 200 ]; then \
	    echo "the demo page answers $$code, not 200:" >&2; \
	    tail -n 5 $(RUN_DIR)/logs/error.log >&2; \
	    $(MAKE) --no-print-directory stop >/dev/null; exit 1; \
	fi
	@echo
	@echo "The demo is running (nginx -p build/run -c build/run/nginx.conf, pid $$(cat $(RUN_DIR)/nginx.pid))."
	@echo
	@echo "  demo page    $(RUN_URL)/"
	@echo "  subscribe    curl -N $(RUN_URL)/events/news"
	@echo "  publish      curl -d 'hello' $(RUN_URL)/publish/news"
	@echo "               curl --data-binary @file.txt '$(RUN_URL)/publish/news?event=update'"
	@echo "  status       curl $(RUN_URL)/status"
	@echo "               curl '$(RUN_URL)/status?format=prometheus'"
	@echo "               curl -N -H 'Accept: text/event-stream' $(RUN_URL)/status"
	@echo "  logs         build/run/logs/error.log, build/run/logs/access.log"
	@echo "  page         served from a copy in $$(cat $(RUN_DIR)/www)/html (make run again after editing conf-examples/demo/)"
	@echo "  stop         make stop"

stop:
	@pidfile=$(RUN_DIR)/nginx.pid; \
	pid=$$(cat "$$pidfile" 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null \
	        && grep -q nginx "/proc/$$pid/cmdline" 2>/dev/null; then \
	    kill -TERM "$$pid"; \
	    for i in $$(seq 50); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; \
	    if kill -0 "$$pid" 2>/dev/null; then \
	        echo "demo nginx $$pid did not stop within 5s" >&2; exit 1; \
	    fi; \
	    echo "stopped demo nginx $$pid"; \
	else \
	    echo "no demo nginx running"; \
	fi; \
	rm -f "$$pidfile"; \
	www=$$(cat $(RUN_DIR)/www 2>/dev/null); \
	case "$$www" in \
	    /tmp/ngx-sse-demo.??????) [ -d "$$www" ] && [ -O "$$www" ] && rm -rf "$$www" ;; \
	esac; \
	rm -f $(RUN_DIR)/www
