#include "module.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "installdirs.h"

void *chat_relay_module_symbol(const char *name, const char *symbol, size_t errlen, char *err)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	struct stat st;
	void *h, *sym;

	chat_paths_module_dir(sizeof(dir), dir);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.so", dir, name) >= sizeof(path)) {
		snprintf(err, errlen, "module directory '%s' is too long", dir);
		return NULL;
	}
	if (stat(path, &st) != 0) {
		snprintf(err, errlen,
		         "module %s: %s (this chat-relay was built without it, or it is not installed; "
		         "$CHAT_MODULE_DIR overrides the directory)",
		         path, errno == ENOENT ? "no such file" : "cannot be read");
		return NULL;
	}
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		snprintf(err, errlen, "module %s cannot be loaded: %s", path, why ? why : "dlopen failed");
		return NULL;
	}
	sym = dlsym(h, symbol);
	if (!sym) {
		snprintf(err, errlen, "module %s does not export %s (not a chat-relay module?)", path,
		         symbol);
		dlclose(h);
		return NULL;
	}
	return sym; /* the handle stays open: the module's code is in use until exit */
}
