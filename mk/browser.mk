# Real-browser tests: t/browser/*.t drive Debian's /usr/bin/chromium, headless,
# with playwright-core (t/package.json; no browser download: Debian's
# Chromium is the browser).  make test runs them after t/; alone:
#
#   make test-browser      deps + build, then prove t/browser/
#
# The demo test leaves its screenshot in build/screenshots/demo.png.
# fonts-dejavu-core: Chromium draws text with it (the screenshot).

DEB_PACKAGES += chromium fonts-dejavu-core
TEST_DIRS    += t/browser/

.PHONY: test-browser
test-browser: deps build
	prove t/browser/
