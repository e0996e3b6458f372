# The libFuzzer targets (fuzz/README.md), included by Makefile.am. They
# are built by clang straight from the core's sources, beside the
# configured build, so that ./configure && make never needs clang.
#
#   make fuzz                        each target for FUZZ_SECONDS (60)
#   make fuzz FUZZ_SECONDS=3600      the long run
#   make fuzz FUZZ_TARGETS=config    some targets only
#   make fuzz-build                  only build fuzz/out/fuzz-TARGET
#   make fuzz FUZZ_TIMEOUT=10        seconds one input may take
#   make fuzz FUZZ_ARGS=...          more libFuzzer options
#
# make fuzz fails when a target crashes, leaks, trips a sanitizer or a
# check, or runs out of time on one input. Scratch corpora, logs and
# crash inputs are left in fuzz/work/.

CLANG = clang
FUZZ_SECONDS = 60
FUZZ_TIMEOUT = 10
FUZZ_ARGS =
FUZZ_TARGETS = token challenge config cert msi
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Wshadow -Wno-unused-parameter \
	-DOA2_FUZZ_CORPUS='"$(abs_top_srcdir)/fuzz/corpus"' \
	-I. -I$(top_srcdir)/include \
	$(CRYPTO_CFLAGS) $(CURL_CFLAGS) $(LIBCONFIG_CFLAGS) $(JANSSON_CFLAGS)
FUZZ_PROGS = fuzz/out/fuzz-token fuzz/out/fuzz-challenge \
	fuzz/out/fuzz-config fuzz/out/fuzz-cert fuzz/out/fuzz-msi
FUZZ_DEPS = fuzz/fuzz.h fuzz/out/libcore.a
FUZZ_LINK = $(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer

# The core once, with coverage for the fuzzer but no main.
fuzz/out/libcore.a: $(libcore_la_SOURCES) config.h
	@$(CLANG) --version > /dev/null 2>&1 || { \
	  echo "make fuzz needs clang with libFuzzer: apt-get install clang" \
	    "(or make fuzz CLANG=clang-NN)" >&2; exit 1; }
	@$(MKDIR_P) fuzz/out
	rm -f $@ fuzz/out/core-*.o
	@for s in $(libcore_la_SOURCES); do \
	  case $$s in *.c) ;; *) continue ;; esac; \
	  o=fuzz/out/core-`basename $$s .c`.o; \
	  echo "  CLANG    $$o"; \
	  $(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	    -c $(srcdir)/$$s -o $$o || exit 1; \
	done
	$(AR) cr $@ fuzz/out/core-*.o

fuzz/out/fuzz-token: fuzz/fuzz-token.c $(FUZZ_DEPS)
	$(FUZZ_LINK) $(srcdir)/fuzz/fuzz-token.c fuzz/out/libcore.a $(CORE_LIBS) -o $@
fuzz/out/fuzz-challenge: fuzz/fuzz-challenge.c $(FUZZ_DEPS)
	$(FUZZ_LINK) $(srcdir)/fuzz/fuzz-challenge.c fuzz/out/libcore.a $(CORE_LIBS) -o $@
fuzz/out/fuzz-config: fuzz/fuzz-config.c $(FUZZ_DEPS)
	$(FUZZ_LINK) $(srcdir)/fuzz/fuzz-config.c fuzz/out/libcore.a $(CORE_LIBS) -o $@
fuzz/out/fuzz-cert: fuzz/fuzz-cert.c $(FUZZ_DEPS)
	$(FUZZ_LINK) $(srcdir)/fuzz/fuzz-cert.c fuzz/out/libcore.a $(CORE_LIBS) -o $@

fuzz/out/fuzz-msi: fuzz/fuzz-msi.c $(FUZZ_DEPS)
	$(FUZZ_LINK) $(srcdir)/fuzz/fuzz-msi.c fuzz/out/libcore.a $(CORE_LIBS) -o $@

fuzz-build: $(FUZZ_PROGS)

fuzz: fuzz-build
	FUZZ_TIMEOUT='$(FUZZ_TIMEOUT)' FUZZ_ARGS='$(FUZZ_ARGS)' \
	  $(SHELL) $(srcdir)/fuzz/run.sh '$(srcdir)/fuzz' fuzz \
	  '$(FUZZ_SECONDS)' $(FUZZ_TARGETS)

clean-local: clean-fuzz
clean-fuzz:
	rm -rf fuzz/out fuzz/work

.PHONY: fuzz fuzz-build clean-fuzz

EXTRA_DIST += fuzz/README.md fuzz/run.sh fuzz/fuzz.h fuzz/fuzz-token.c \
	fuzz/fuzz-challenge.c fuzz/fuzz-config.c fuzz/fuzz-cert.c \
	fuzz/fuzz-msi.c fuzz/msi.dict \
	fuzz/token.dict fuzz/challenge.dict fuzz/config.dict fuzz/cert.dict \
	fuzz/lsan.supp \
	fuzz/corpus
