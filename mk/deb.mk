# make deb: the Debian package libnginx-mod-http-sse (included by Makefile)
#
# debian/ is built with dpkg-buildpackage (debhelper, dh --with nginx: the
# nginx_mod build system and dh_nginx come with nginx-dev) from a copy of
# the tree's files in build/deb/src, so that dpkg-buildpackage writes the
# .deb, .buildinfo and .changes to build/deb/ and nothing outside the tree.
# lintian checks the .deb; an error fails the target (and removes the .deb,
# so that the next make deb does not take it as up to date).

DEB_PACKAGES += debhelper dpkg-dev fakeroot build-essential lintian iproute2

DEB_NAME    := libnginx-mod-http-sse
# from the first line of debian/changelog: "name (version) dist; ..."
DEB_VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog 2>/dev/null)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
DEB_OUT     := build/deb
DEB_FILE    := $(DEB_OUT)/$(DEB_NAME)_$(DEB_VERSION)_$(DEB_ARCH).deb

# what the package is made of: a change to any of them rebuilds it, and so
# does another nginx-dev (its ABI and its configure)
DEB_INPUTS := $(MODULE_CONFIG) $(MODULE_SOURCES) $(wildcard debian/* debian/*/*) \
              README.md $(wildcard conf-examples/* conf-examples/*/*) \
              $(wildcard /usr/share/nginx/src/debian/libnginx-mod.abisubstvars \
                         /usr/share/nginx/src/configure /usr/share/nginx/src/conf_flags)

# the list itself, so that a file removed from debian/ (or conf-examples/)
# rebuilds the package too
DEB_LIST := build/.deb-inputs

.PHONY: deb

deb: deps $(DEB_FILE)

$(DEB_LIST): FORCE
	@mkdir -p build
	@echo '$(DEB_INPUTS)' | cmp -s - $@ || echo '$(DEB_INPUTS)' > $@

$(DEB_FILE): $(DEB_INPUTS) $(DEB_LIST) mk/deb.mk
	@test -n '$(DEB_VERSION)' || { echo "error: no version in debian/changelog" >&2; exit 1; }
	rm -rf $(DEB_OUT)
	mkdir -p $(DEB_OUT)/src
	@# the files git tracks (as they are in the work tree) and the new ones
	@# it would add (not ignored: no build/, no node_modules); without git,
	@# the tree less build/, .git and node_modules
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do \
	        if [ -e "$$f" ]; then printf '%s\0' "$$f"; fi; done \
	        | tar --null -T - -cf - | tar -C $(DEB_OUT)/src -xf -; \
	else \
	    tar --exclude=./build --exclude=./.git --exclude='node_modules' -cf - . \
	        | tar -C $(DEB_OUT)/src -xf -; \
	fi
	cd $(DEB_OUT)/src && dpkg-buildpackage -b -us -uc > ../build.log 2>&1 \
	    || { tail -n 40 ../build.log; echo "dpkg-buildpackage failed: see $(DEB_OUT)/build.log" >&2; exit 1; }
	@test -f $@ || { echo "error: dpkg-buildpackage made no $@" >&2; ls $(DEB_OUT) >&2; exit 1; }
	@echo "lintian $@"
	lintian --fail-on error --display-info $@ 2>&1 | tee $(DEB_OUT)/lintian.log \
	    || { rm -f $@; echo "lintian found errors: $@ removed" >&2; exit 1; }
	@echo "built $@ (log: $(DEB_OUT)/build.log)"
