# C ABI: the generated header, C tests (plain, valgrind, AddressSanitizer), the C++ wrapper, the
# Go binding, the three examples and `make install`. Included by the Makefile, which defines
# CARGO and MODEL.
#
#   make ffi-test             everything below except install; part of `make test`
#   make header               regenerate include/debias_guard.h after changing src/ffi/
#   make examples             build and run the C, C++ and Go examples on the default model
#   make install PREFIX=/opt  shared and static library, headers, lib/pkgconfig/debias-guard.pc
#
# Needs: a C and C++ compiler (gcc/g++ with libasan), valgrind, pkg-config, Go >= 1.19.

PREFIX       ?= /usr/local
GO           ?= go
FFI_OUT      := target/ffi
FFI_LIB      := target/release
FFI_TINY     := $(FFI_OUT)/tiny.gguf
FFI_ADAPTER  := $(FFI_OUT)/tiny-adapter
FFI_PREFIX   := $(CURDIR)/$(FFI_OUT)/prefix
FFI_SAMPLE   := assets/transcripts/multiplication_drill.txt
FFI_ITEM     := instructional_dialogue
FFI_VERSION  := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
# The ABI part of the version, as build.rs writes it into the SONAME: major.minor while 0.x, else major.
FFI_ABI      := $(shell echo $(FFI_VERSION) | awk -F. '{ print ($$1 == 0) ? $$1 "." $$2 : $$1 }')
FFI_SONAME   := libdebias_guard.so.$(FFI_ABI)
FFI_CFLAGS   := -std=c11 -Wall -Wextra -Werror -pedantic -g -Iinclude -Itests/ffi
FFI_CXXFLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -g -Iinclude -Ibindings/cpp
FFI_LDLIBS   := -L$(FFI_LIB) -ldebias_guard -Wl,-rpath,$(CURDIR)/$(FFI_LIB) -lm -pthread
FFI_ASAN     := -fsanitize=address,undefined -fno-omit-frame-pointer
FFI_VALGRIND_THREADS_SIZE ?= 1 1
FFI_ASAN_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# --fair-sched=yes: valgrind runs one thread at a time, and its default lock lets the model's busy
# worker threads starve the thread that relays dg_audit's progress reports and cancel requests.
FFI_VALGRIND := valgrind --fair-sched=yes --error-exitcode=99 --leak-check=full \
                --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect

.PHONY: ffi-test ffi-lib header header-check ffi-c-test ffi-cpp-test ffi-valgrind ffi-go-test \
        examples ffi-prefix ffi-example-c ffi-example-cpp ffi-example-go install

ffi-test: header-check ffi-c-test ffi-cpp-test ffi-valgrind ffi-go-test examples

## The library (cdylib + staticlib) and the test kit's tiny-model writer the tests use.
ffi-lib:
	@mkdir -p $(FFI_OUT)
	$(CARGO) build --release --locked --lib
	ln -sf libdebias_guard.so $(FFI_LIB)/$(FFI_SONAME)
	$(CARGO) build --release --locked -p debias-guard-testkit --bin make_tiny_model

$(FFI_TINY): ffi-lib
	$(FFI_LIB)/make_tiny_model $@

## The checked-in header must equal a fresh generation; `make header` rewrites it.
header-check:
	$(CARGO) test --release --locked --test ffi_header

header:
	DEBIAS_GUARD_WRITE_HEADER=1 $(CARGO) test --release --locked --test ffi_header

## C tests on the tiny model: plain and under AddressSanitizer + UBSan.
ffi-c-test: ffi-lib $(FFI_TINY)
	$(CC) $(FFI_CFLAGS) tests/ffi/test_api.c -o $(FFI_OUT)/test_api $(FFI_LDLIBS)
	$(CC) $(FFI_CFLAGS) tests/ffi/test_threads.c -o $(FFI_OUT)/test_threads $(FFI_LDLIBS)
	$(CC) $(FFI_CFLAGS) $(FFI_ASAN) tests/ffi/test_api.c -o $(FFI_OUT)/test_api_asan $(FFI_LDLIBS)
	$(CC) $(FFI_CFLAGS) $(FFI_ASAN) tests/ffi/test_threads.c -o $(FFI_OUT)/test_threads_asan $(FFI_LDLIBS)
	$(FFI_OUT)/test_api $(FFI_TINY) $(FFI_OUT)/scratch $(FFI_ADAPTER)
	$(FFI_OUT)/test_threads $(FFI_TINY)
	$(FFI_ASAN_ENV) $(FFI_OUT)/test_api_asan $(FFI_TINY) $(FFI_OUT)/scratch-asan $(FFI_ADAPTER)
	$(FFI_ASAN_ENV) $(FFI_OUT)/test_threads_asan $(FFI_TINY)

## The C++ wrapper on the tiny model, under AddressSanitizer + UBSan.
ffi-cpp-test: ffi-lib $(FFI_TINY)
	$(CXX) $(FFI_CXXFLAGS) $(FFI_ASAN) tests/ffi/test_cpp.cpp -o $(FFI_OUT)/test_cpp $(FFI_LDLIBS)
	$(FFI_ASAN_ENV) $(FFI_OUT)/test_cpp $(FFI_TINY) $(FFI_OUT)/scratch-cpp

## test_api and test_threads (16 threads on one handle; FFI_VALGRIND_THREADS_SIZE = rounds and call
## kinds per round, smaller than the plain run's 25 x 4) under valgrind memcheck: no invalid access, no definite or indirect leak.
## ("possibly lost" blocks are the library's process-wide lazy statics; they are reported only.)
ffi-valgrind: ffi-c-test
	@rm -f $(FFI_OUT)/valgrind.log
	$(FFI_VALGRIND) --log-file=$(FFI_OUT)/valgrind.log \
	    $(FFI_OUT)/test_api $(FFI_TINY) $(FFI_OUT)/scratch-valgrind $(FFI_ADAPTER) \
	    || { cat $(FFI_OUT)/valgrind.log; exit 1; }
	@grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost" $(FFI_OUT)/valgrind.log
	@rm -f $(FFI_OUT)/valgrind-threads.log
	$(FFI_VALGRIND) --log-file=$(FFI_OUT)/valgrind-threads.log \
	    $(FFI_OUT)/test_threads $(FFI_TINY) $(FFI_VALGRIND_THREADS_SIZE) \
	    || { cat $(FFI_OUT)/valgrind-threads.log; exit 1; }
	@grep -E "ERROR SUMMARY|definitely lost|indirectly lost" $(FFI_OUT)/valgrind-threads.log

## Go binding: vet, format, and tests (with a concurrent one) under the race detector.
ffi-go-test: ffi-lib $(FFI_TINY)
	@unformatted=$$(gofmt -l bindings/go examples/go); \
	 if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	cd bindings/go && $(GO) vet -tags dg_checkout ./...
	cd bindings/go && DEBIAS_GUARD_TINY_MODEL=$(CURDIR)/$(FFI_TINY) $(GO) test -tags dg_checkout -count=1 -race ./...

## The examples audit a sample transcript on the default model and print the verdict.
examples: ffi-example-c ffi-example-cpp ffi-example-go

## A fresh install under target/ffi/prefix, for the examples: the stripped shared library with its
## SONAME and version links, the static archive, headers and the pkg-config file.
ffi-prefix: ffi-lib
	rm -rf $(FFI_PREFIX)
	$(call ffi_install,$(FFI_PREFIX),$(FFI_PREFIX))
	readelf -d $(FFI_PREFIX)/lib/libdebias_guard.so | grep -q 'SONAME.*\[$(FFI_SONAME)\]'
	! readelf -S $(FFI_PREFIX)/lib/libdebias_guard.so.$(FFI_VERSION) | grep -q '\.debug_'

## C, built against the installed copy through pkg-config (shared), and linked statically.
ffi-example-c: $(MODEL) $(FFI_TINY) ffi-prefix
	PKG_CONFIG_PATH=$(FFI_PREFIX)/lib/pkgconfig sh -c '$(CC) -std=c11 -Wall -Wextra -Werror \
	    examples/c/audit.c -o $(FFI_OUT)/audit_c $$(pkg-config --cflags --libs debias-guard) \
	    -Wl,-rpath,$$(pkg-config --variable=libdir debias-guard)'
	$(FFI_OUT)/audit_c $(MODEL) $(FFI_SAMPLE) $(FFI_ITEM)
	PKG_CONFIG_PATH=$(FFI_PREFIX)/lib/pkgconfig sh -c '$(CC) -std=c11 -Wall -Wextra -Werror \
	    examples/c/audit.c -o $(FFI_OUT)/audit_c_static $$(pkg-config --cflags debias-guard) \
	    $$(pkg-config --static --libs debias-guard \
	       | sed "s/-ldebias_guard/-Wl,-Bstatic -ldebias_guard -Wl,-Bdynamic/")'
	! ldd $(FFI_OUT)/audit_c_static | grep -q debias_guard
	$(FFI_OUT)/audit_c_static $(FFI_TINY) $(FFI_SAMPLE) $(FFI_ITEM) > /dev/null

## C++, under AddressSanitizer + UBSan.
ffi-example-cpp: ffi-lib $(MODEL)
	$(CXX) $(FFI_CXXFLAGS) $(FFI_ASAN) examples/cpp/audit.cpp -o $(FFI_OUT)/audit_cpp $(FFI_LDLIBS)
	$(FFI_ASAN_ENV) $(FFI_OUT)/audit_cpp $(MODEL) $(FFI_SAMPLE) $(FFI_ITEM)

## Go, as a user outside the repository builds it: a copy of bindings/go, required by a separate
## module, linked against the installed copy through pkg-config (no path into the checkout).
FFI_GO_MOD := $(FFI_OUT)/go-module
ffi-example-go: $(MODEL) ffi-prefix
	rm -rf $(FFI_GO_MOD) && mkdir -p $(FFI_GO_MOD)/app
	cp -r bindings/go $(FFI_GO_MOD)/debiasguard
	cp examples/go/audit.go $(FFI_GO_MOD)/app/
	printf 'module example.org/audit\n\ngo 1.19\n\nrequire debias-guard.dev/debiasguard v0.0.0\n\nreplace debias-guard.dev/debiasguard => ../debiasguard\n' \
	    > $(FFI_GO_MOD)/app/go.mod
	cd $(FFI_GO_MOD)/app && PKG_CONFIG_PATH=$(FFI_PREFIX)/lib/pkgconfig GOFLAGS=-mod=mod GOPROXY=off \
	    $(GO) vet . && PKG_CONFIG_PATH=$(FFI_PREFIX)/lib/pkgconfig GOFLAGS=-mod=mod GOPROXY=off \
	    $(GO) build -o $(CURDIR)/$(FFI_OUT)/audit_go .
	! strings $(FFI_OUT)/audit_go | grep -q '$(CURDIR)/target/release'
	LD_LIBRARY_PATH=$(FFI_PREFIX)/lib $(FFI_OUT)/audit_go $(MODEL) $(FFI_SAMPLE) $(FFI_ITEM)

## Install the library, the C and C++ headers and a pkg-config file under $(DESTDIR)$(PREFIX).
install: ffi-lib
	$(call ffi_install,$(DESTDIR)$(PREFIX),$(PREFIX))

# $(call ffi_install,DIR,PREFIX): copies the files to DIR; the .pc file names PREFIX.
define ffi_install
	install -d $(1)/lib/pkgconfig $(1)/include
	install -m 755 $(FFI_LIB)/libdebias_guard.so $(1)/lib/libdebias_guard.so.$(FFI_VERSION)
	strip --strip-unneeded $(1)/lib/libdebias_guard.so.$(FFI_VERSION)
	ln -sf libdebias_guard.so.$(FFI_VERSION) $(1)/lib/$(FFI_SONAME)
	ln -sf $(FFI_SONAME) $(1)/lib/libdebias_guard.so
	install -m 644 $(FFI_LIB)/libdebias_guard.a $(1)/lib/libdebias_guard.a
	strip --strip-debug $(1)/lib/libdebias_guard.a
	install -m 644 include/debias_guard.h $(1)/include/debias_guard.h
	install -m 644 bindings/cpp/debias_guard.hpp $(1)/include/debias_guard.hpp
	sed -e 's|@PREFIX@|$(abspath $(2))|g' -e 's|@VERSION@|$(FFI_VERSION)|g' \
	    mk/debias-guard.pc.in > $(1)/lib/pkgconfig/debias-guard.pc
endef
