# libFuzzer targets for the module's pure parsers (ngx_http_sse_event.c),
# with AddressSanitizer and UndefinedBehaviorSanitizer (included by
# Makefile; fuzz/ has the targets, their seed corpora and dictionaries).
#
#   make fuzz-build     build/fuzz/fuzz_<target> for each target
#   make fuzz           each target for FUZZ_SECONDS (300) in turn; fails
#                       when one finds a crash, a leak or a broken property
#   make fuzz FUZZ_TARGETS=body FUZZ_SECONDS=60     one target, a minute
#
# A run's new inputs go to build/fuzz/corpus/<target>/ (kept between runs),
# what it finds to build/fuzz/crashes/; reproduce one with
# build/fuzz/fuzz_<target> <file>.  t/90-fuzz.t runs each for 12 s.
#
# The module's file is compiled against the configured tree ($(SRC_DIR):
# its headers and objs/ngx_auto_config.h, with its include flags).  The few
# nginx core functions it calls come from fuzz/ngx_core_stubs.c, our own
# stand-ins, as Debian's tree (nginx-dev) has headers only; with an
# upstream tree (NGINX_SRC=...) the tree's own core files are linked
# instead (with fuzz/ngx_upstream_stubs.c).

# clang 14 with libFuzzer (libclang-rt-14-dev has libclang_rt.fuzzer)
DEB_PACKAGES += clang libclang-rt-14-dev

FUZZ_TARGETS ?= body event channels id ctype
FUZZ_SECONDS ?= 300
FUZZ_RSS_MB  ?= 2048
# more libFuzzer options for make fuzz (-jobs=2, -only_ascii=1, ...)
FUZZ_OPTS    ?=

FUZZ_CC     ?= clang
FUZZ_CFLAGS ?= -g -O1
# nginx's own warning flags, as the module is built with
FUZZ_WARN   := -W -Wall -Wpointer-arith -Wno-unused-parameter -Werror
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=all

ifeq ($(strip $(NGINX_SRC)),)
  FUZZ_DIR  := build/fuzz
else
  FUZZ_DIR  := build/fuzz-upstream
endif

# for t/90-fuzz.t
export SSE_FUZZ_DIR := $(CURDIR)/$(FUZZ_DIR)

# the tree's include flags (ALL_INCS of objs/Makefile, relative to the
# tree), read when a recipe runs: the tree is configured by then
FUZZ_INCS = $(shell awk '/^ALL_INCS/ { f = 1 } f && /^$$/ { exit } \
    f { for (i = 1; i <= NF; i++) if ($$i != "-I" && $$i != "\\" && $$i != "=" && $$i != "ALL_INCS") \
        print "-I" ($$i ~ /^\// ? "" : "$(SRC_DIR)/") $$i }' $(SRC_DIR)/objs/Makefile) -I$(CURDIR) -Ifuzz

FUZZ_BINS      := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_TARGETS))
FUZZ_OBJS      := $(addsuffix .o,$(FUZZ_BINS)) $(FUZZ_DIR)/fuzz_common.o
FUZZ_COMMON    := $(FUZZ_DIR)/ngx_http_sse_event.o $(FUZZ_DIR)/fuzz_common.o

ifeq ($(strip $(NGINX_SRC)),)
# Debian's headers: our stand-ins (sanitized, without coverage, so that the
# fuzzers' feedback is the module's and the targets' own code)
FUZZ_COMMON    += $(FUZZ_DIR)/ngx_core_stubs.o

$(FUZZ_DIR)/ngx_core_stubs.o: fuzz/ngx_core_stubs.c $(SRC_DIR)/objs/Makefile mk/fuzz.mk
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -c $(FUZZ_CFLAGS) $(FUZZ_WARN) $(FUZZ_SAN) $(FUZZ_INCS) -o $@ $<
else
# an upstream tree: its own core files (sanitized, without coverage)
FUZZ_NGX_FILES := src/core/ngx_palloc.c src/core/ngx_array.c \
                  src/core/ngx_string.c src/os/unix/ngx_alloc.c
FUZZ_OBJS      += $(FUZZ_DIR)/ngx_upstream_stubs.o
FUZZ_COMMON    += $(FUZZ_DIR)/ngx_upstream_stubs.o $(FUZZ_DIR)/ngx_core.a

$(FUZZ_DIR)/ngx_core.a: $(SRC_DIR)/objs/Makefile mk/fuzz.mk
	@mkdir -p $(FUZZ_DIR)/core
	@set -e; rm -f $@; objs=; \
	for f in $(FUZZ_NGX_FILES); do \
	    o=$(FUZZ_DIR)/core/$$(basename $$f .c).o; \
	    echo "$(FUZZ_CC) -c $(SRC_DIR)/$$f"; \
	    $(FUZZ_CC) -c $(FUZZ_CFLAGS) $(FUZZ_SAN) $(FUZZ_INCS) -o $$o $(SRC_DIR)/$$f; \
	    objs="$$objs $$o"; \
	done; \
	ar rcs $@ $$objs
endif

.PHONY: fuzz-build fuzz

fuzz-build: $(FUZZ_BINS)

# the module's file, and the targets' own code: with libFuzzer's coverage
$(FUZZ_DIR)/ngx_http_sse_event.o: ngx_http_sse_event.c ngx_http_sse.h $(SRC_DIR)/objs/Makefile mk/fuzz.mk
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -c $(FUZZ_CFLAGS) $(FUZZ_WARN) -fsanitize=fuzzer $(FUZZ_SAN) $(FUZZ_INCS) -o $@ $<

$(FUZZ_OBJS): $(FUZZ_DIR)/%.o: fuzz/%.c fuzz/fuzz.h ngx_http_sse.h $(SRC_DIR)/objs/Makefile mk/fuzz.mk
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -c $(FUZZ_CFLAGS) $(FUZZ_WARN) -fsanitize=fuzzer $(FUZZ_SAN) $(FUZZ_INCS) -o $@ $<

$(FUZZ_BINS): $(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/fuzz_%.o $(FUZZ_COMMON)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^

# each target in turn; all run even when one fails
fuzz: deps fuzz-build
	@failed=; \
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/crashes; \
	    dict=; [ -f fuzz/$$t.dict ] && dict=-dict=fuzz/$$t.dict; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/$$t.log)"; \
	    UBSAN_OPTIONS=print_stacktrace=1 $(FUZZ_DIR)/fuzz_$$t \
	        -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=$(FUZZ_RSS_MB) \
	        -max_len=4096 -timeout=30 -print_final_stats=1 $$dict \
	        -artifact_prefix=$(FUZZ_DIR)/crashes/$$t- $(FUZZ_OPTS) \
	        $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t > $(FUZZ_DIR)/$$t.log 2>&1; \
	    rc=$$?; \
	    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' $(FUZZ_DIR)/$$t.log; \
	    if [ $$rc -ne 0 ]; then \
	        echo "!! fuzz $$t failed (exit $$rc):"; \
	        grep -E -A2 'PROPERTY VIOLATED|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' $(FUZZ_DIR)/$$t.log | head -12; \
	        grep -E -m8 '#[0-9]+ 0x[0-9a-f]+ in (ngx_|fuzz_|ref_|check_parse|LLVMFuzzerTestOneInput)' $(FUZZ_DIR)/$$t.log; \
	        grep -E '^artifact_prefix|Test unit written to' $(FUZZ_DIR)/$$t.log; \
	        failed="$$failed $$t"; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi; \
	echo "fuzz: no crash, leak or broken property in $(FUZZ_TARGETS)"
