/*
 * Which configuration file is used: one rule for the implementation,
 * the command and the plugin's loader (plugin/init.c, linked against
 * libc only, which looks whether the file exists before it loads
 * anything). Needs config.h (OA2_DEFAULT_CONF, _GNU_SOURCE) first.
 */
#ifndef OA2_CONFPATH_H
#define OA2_CONFPATH_H

#include <stdlib.h>

/*
 * The config file to use: option (the SASL option oauth2_config) if
 * set, else $SASL_OAUTH2_CONF (ignored in setuid programs), else the
 * built-in default. Returns a string owned by its source.
 */
static inline const char *
oa2_config_path(const char *option)
{
	const char *env;

	if (option != NULL && *option != '\0')
		return option;
	if ((env = secure_getenv("SASL_OAUTH2_CONF")) != NULL && *env != '\0')
		return env;
	return OA2_DEFAULT_CONF;
}

#endif
