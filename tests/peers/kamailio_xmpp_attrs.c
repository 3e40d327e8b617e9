/*
 * Preloaded into the Kamailio of tests/peers/kamailio_xmpp.py (LD_PRELOAD).
 *
 * Kamailio's xmpp module (5.2 to at least 5.6, and its master branch)
 * copies the attributes of every XML element it receives with a loop
 * that stops at an attribute NAME that is an empty string, testing
 * *(atts[i]) != '\0'.  Expat ends the attribute array with a NULL pointer,
 * not with an empty string, so the loop reads through NULL: the module's
 * "XMPP Manager" process dies with SIGSEGV on the first element the XMPP
 * server sends (the stream header), and Kamailio shuts down.
 *
 * This library stands between the xmpp module and expat: for the start
 * handlers that the module registers (and only for those), it passes a
 * copy of the attribute array that ends with "" after the last pair,
 * which is what that loop expects.  Nothing else of Kamailio or of expat
 * changes.
 *
 * Build (no expat headers needed):
 *   cc -shared -fPIC -O2 -o kamailio_xmpp_attrs.so kamailio_xmpp_attrs.c -ldl -lpthread
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few expat types used here, as expat.h declares them (with char as
 * XML_Char, Debian's build), so that no expat headers are needed. */
typedef char XML_Char;
typedef struct XML_ParserStruct *XML_Parser;
typedef void (*XML_StartElementHandler)(
		void *userData, const XML_Char *name, const XML_Char **atts);
typedef void (*XML_EndElementHandler)(void *userData, const XML_Char *name);

typedef void (*set_element_handler_f)(XML_Parser, XML_StartElementHandler,
		XML_EndElementHandler);
typedef void (*set_start_handler_f)(XML_Parser, XML_StartElementHandler);

/* The module's own start handlers, each behind a wrapper of its own. */
#define SLOTS 8
static XML_StartElementHandler originals[SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static const XML_Char empty_name[] = "";

static void call_with_terminator(int slot, void *data, const XML_Char *name,
		const XML_Char **atts)
{
	size_t n = 0, i;
	const XML_Char *small[33];
	const XML_Char **copy = small;

	while(atts != NULL && atts[n] != NULL)
		n++;
	if(n + 1 > sizeof(small) / sizeof(small[0])) {
		copy = malloc((n + 1) * sizeof(*copy));
		if(copy == NULL)
			return;
	}
	for(i = 0; i < n; i++)
		copy[i] = atts[i];
	copy[n] = empty_name;
	originals[slot](data, name, copy);
	if(copy != small)
		free(copy);
}

#define WRAPPER(k)                                                     \
	static void wrapper_##k(                                           \
			void *data, const XML_Char *name, const XML_Char **atts)   \
	{                                                                  \
		call_with_terminator(k, data, name, atts);                     \
	}
WRAPPER(0)
WRAPPER(1)
WRAPPER(2)
WRAPPER(3)
WRAPPER(4)
WRAPPER(5)
WRAPPER(6)
WRAPPER(7)
static const XML_StartElementHandler wrappers[SLOTS] = {wrapper_0, wrapper_1,
		wrapper_2, wrapper_3, wrapper_4, wrapper_5, wrapper_6, wrapper_7};

/* Whether fn is code of Kamailio's xmpp module (.../xmpp.so). */
static int in_xmpp_module(void *fn)
{
	Dl_info info;
	const char *base;

	if(fn == NULL || dladdr(fn, &info) == 0 || info.dli_fname == NULL)
		return 0;
	base = strrchr(info.dli_fname, '/');
	base = base ? base + 1 : info.dli_fname;
	return strcmp(base, "xmpp.so") == 0;
}

static XML_StartElementHandler wrapped(XML_StartElementHandler start)
{
	XML_StartElementHandler out = start;
	int k;

	if(!in_xmpp_module((void *)start))
		return start;
	pthread_mutex_lock(&slots_lock);
	for(k = 0; k < SLOTS; k++) {
		if(originals[k] == start || originals[k] == NULL) {
			originals[k] = start;
			out = wrappers[k];
			break;
		}
	}
	pthread_mutex_unlock(&slots_lock);
	return out;
}

/* expat's own function: the xmpp module loads libexpat with its dlopen(),
 * outside the global scope, so RTLD_NEXT may not find it. */
static void *real_function(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);
	void *lib;

	if(fn != NULL)
		return fn;
	lib = dlopen("libexpat.so.1", RTLD_NOW | RTLD_NOLOAD);
	if(lib == NULL)
		lib = dlopen("libexpat.so.1", RTLD_NOW);
	fn = lib ? dlsym(lib, name) : NULL;
	if(fn == NULL) {
		fprintf(stderr, "kamailio_xmpp_attrs: expat's %s not found\n", name);
		abort();
	}
	return fn;
}

void XML_SetElementHandler(
		XML_Parser parser, XML_StartElementHandler start, XML_EndElementHandler end)
{
	static set_element_handler_f real;

	if(real == NULL)
		real = (set_element_handler_f)real_function("XML_SetElementHandler");
	real(parser, wrapped(start), end);
}

void XML_SetStartElementHandler(XML_Parser parser, XML_StartElementHandler start)
{
	static set_start_handler_f real;

	if(real == NULL)
		real = (set_start_handler_f)real_function("XML_SetStartElementHandler");
	real(parser, wrapped(start));
}
