/* chat.ini (core/src/config.c): the input is the file, loaded and validated
 * against the schema; then every schema key is read back through the typed
 * getters, every [plugin.NAME] section is checked against the suites'
 * declared keys, and every line of the input is also tried as a --set
 * assignment.  Invariants: a loaded configuration answers every schema key
 * (the value or its default) and its values pass the checks they passed on
 * load. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

static void read_back(const struct chat_config *cfg)
{
	char names[16][33];

	for (const struct chat_cfg_key *k = chat_cfg_schema; k->section; k++) {
		const char *v = chat_config_get(cfg, k->section, k->key);
		FUZZ_CHECK(chat_config_where(cfg, k->section, k->key) != NULL);
		if (!v)
			continue;
		switch (k->type) {
		case CHAT_CFG_INT: {
			long long n = chat_config_int(cfg, k->section, k->key);
			if (k->def || v[0])
				FUZZ_CHECK(n >= k->min && n <= k->max);
			break;
		}
		case CHAT_CFG_BOOL: {
			int b = chat_config_bool(cfg, k->section, k->key);
			FUZZ_CHECK(b == 0 || b == 1);
			break;
		}
		case CHAT_CFG_LIST:
			FUZZ_CHECK(chat_config_list(cfg, k->section, k->key, 16, names) <= 16);
			break;
		case CHAT_CFG_PATH:
			(void)chat_config_path(cfg, k->section, k->key);
			break;
		case CHAT_CFG_LEVEL:
			FUZZ_CHECK(chat_log_parse_level(v) >= 0);
			break;
		default:
			break;
		}
	}
	size_t n = chat_config_plugin_sections(cfg);
	for (size_t i = 0; i < n; i++) {
		const char *name = chat_config_plugin_section(cfg, i);
		char err[512];
		FUZZ_CHECK(name && chat_config_plugin_section_where(cfg, i));
		static const char *const suites[] = { "xor-demo", "rc4dh", "aescbc-hmac" };
		for (size_t s = 0; s < 3; s++) {
			if (strcmp(name, suites[s]))
				continue;
			const struct chat_plugin *p = fuzz_suite(suites[s]);
			if (chat_config_check_plugin(cfg, name, p->config_keys, sizeof(err), err) == CHAT_OK)
				for (const struct chat_config_key *k = p->config_keys; k && k->name; k++)
					FUZZ_CHECK(chat_config_plugin_get(cfg, name, p->config_keys, k->name));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_config *cfg = NULL;
	char err[1024], line[1024];
	const char *path;

	fuzz_init();
	path = fuzz_file("chat.ini", size, data);
	if (chat_config_load(path, &cfg, sizeof(err), err) != CHAT_OK) {
		FUZZ_CHECK(err[0]);
		if (chat_config_load(NULL, &cfg, sizeof(err), err) != CHAT_OK)
			return 0;
	}
	read_back(cfg);
	/* every line as a --set assignment */
	for (size_t i = 0; i < size;) {
		size_t n = 0;
		while (i + n < size && data[i + n] != '\n')
			n++;
		if (n < sizeof(line)) {
			memcpy(line, data + i, n);
			line[n] = '\0';
			if (strlen(line) == n && chat_config_set(cfg, line, sizeof(err), err) != CHAT_OK)
				FUZZ_CHECK(err[0]);
		}
		i += n + 1;
	}
	read_back(cfg);
	chat_config_free(cfg);
	return 0;
}

void fuzz_seeds(const char *dir)
{
	static const char *const seeds[] = {
		("; a relay\n[core]\nplugin_dir = ../plugins\nlog_level = debug\nmax_frame = 65536\n\n"
		"[relay]\nlisten = [::1]:7400\nsuites = aescbc-hmac, rc4dh\ndatabase = var/relay.db\n"
		"guests = yes\nkeepalive = 5\ndead_after = 15\n"),
		("[client]\nrelay = 127.0.0.1:7400\nuser = alice\nsuites = xor-demo\n"
		"[plugin.aescbc-hmac]\niterations = 1000\nwindow = 30\n[plugin.rc4dh]\ndrop = 768\n"),
		"[relay]\nlisen = 1.2.3.4:5\n",
		"[core]\nmax_frame = 99999999999999999999\n",
		"relay.listen=127.0.0.1:0\ncore.log_level=warn\nplugin.rc4dh.drop=0\n",
		"[peer]\nlisten = 0.0.0.0:7401\ndirectory = peers.json\nlog = alice.log\n",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		snprintf(name, sizeof(name), "ini%zu", i);
		fuzz_write_seed(dir, name, strlen(seeds[i]), seeds[i]);
	}
}
