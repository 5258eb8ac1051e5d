/* The relay's optional modules: code that needs a library most relays do
 * not (libpq for relay.store = postgresql://..., hiredis for relay.cluster)
 * is built as a shared object in the module directory
 * (chat_paths_module_dir) and loaded only when chat.ini asks for it, so
 * chat-relay itself links neither.  A module exports one table of functions
 * under a known symbol; the interface is internal (built with the relay,
 * never a third party's), so a module from another build is refused by its
 * version number. */
#ifndef CHAT_RELAY_MODULE_H
#define CHAT_RELAY_MODULE_H

#include <stddef.h>

/* dlopen DIR/NAME.so (once; it stays loaded for the life of the process)
 * and return its symbol `symbol`, or NULL with err naming the file and
 * what is wrong (missing: "the relay was built without it" hint). */
void *chat_relay_module_symbol(const char *name, const char *symbol, size_t errlen, char *err);

#endif
