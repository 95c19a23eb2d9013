# make run / make stop: the demo on http://127.0.0.1:8080/ (included by Makefile)


run: deps build
	@mkdir -p $(RUN_DIR)/logs $(RUN_DIR)/tmp
	sed -e 's|@MODULE@|$(CURDIR)/$(SO)|g' \
	    -e 's|@DIR@|$(RUN_DIR)|g' \
	    -e 's|@HTML@|$(CURDIR)/conf-examples/demo|g' \
	    conf-examples/demo.conf > $(RUN_DIR)/nginx.conf
	@$(MAKE) --no-print-directory stop >/dev/null
	@$(NGINX_BIN) -p $(RUN_DIR) -c $(RUN_DIR)/nginx.conf -t -q || exit 1
	@$(NGINX_BIN) -p $(RUN_DIR) -c $(RUN_DIR)/nginx.conf || { \
	    echo "nginx did not start; see $(RUN_DIR)/logs/error.log" >&2; exit 1; }
	@echo
	@echo "The demo is running (nginx -p build/run -c build/run/nginx.conf, pid $$(cat $(RUN_DIR)/nginx.pid))."
	@echo
	@echo "  demo page    http://127.0.0.1:8080/"
	@echo "  subscribe    curl -N http://127.0.0.1:8080/events/news"
	@echo "  publish      curl -d 'hello' http://127.0.0.1:8080/publish/news"
	@echo "               curl --data-binary @file.txt 'http://127.0.0.1:8080/publish/news?event=update'"
	@echo "  status       curl http://127.0.0.1:8080/status"
	@echo "               curl 'http://127.0.0.1:8080/status?format=prometheus'"
	@echo "  logs         build/run/logs/error.log, build/run/logs/access.log"
	@echo "  stop         make stop"

stop:
	@pidfile=$(RUN_DIR)/nginx.pid; \
	pid=$$(cat "$$pidfile" 2>/dev/null) || { echo "no demo nginx running"; exit 0; }; \
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
	rm -f "$$pidfile"

