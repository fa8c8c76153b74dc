/*
 * client_cert_shim.c: an LD_PRELOAD shim that makes stock h2load (nghttp2-client) present a
 * TLS client certificate.
 *
 * h2load has no client-certificate option. This library interposes OpenSSL 3's SSL_CTX_new:
 * it creates the context with the real function (found with dlsym(RTLD_NEXT, ...)) and, when
 * both H2LOAD_CLIENT_CERT and H2LOAD_CLIENT_KEY are set, loads the certificate chain (PEM, leaf
 * first) and the private key (PEM) into it, so every TLS connection h2load makes with that
 * context offers them when the server asks for a client certificate.
 *
 * Any failure (only one of the variables set, unreadable file, key not matching the
 * certificate) is printed to stderr with OpenSSL's error queue and aborts the process: a load
 * test that silently runs without the certificate would measure refused handshakes.
 *
 * Contexts created with a server-only method (TLS_server_method, DTLS_server_method) are left
 * alone. Without the variables the shim changes nothing.
 *
 * Build: cc -shared -fPIC -O2 -o client_cert_shim.so client_cert_shim.c -ldl
 * Use:   H2LOAD_CLIENT_CERT=client.pem H2LOAD_CLIENT_KEY=client.key \
 *        LD_PRELOAD=./client_cert_shim.so h2load --h1 https://host:port/
 *
 * Every OpenSSL function is looked up at run time in the libssl the host program already
 * loaded, so the shim needs only the OpenSSL headers to build and links against nothing but
 * libdl.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define CERT_ENV "H2LOAD_CLIENT_CERT"
#define KEY_ENV "H2LOAD_CLIENT_KEY"
#define TAG "h2load client-cert shim"

typedef SSL_CTX *(*ctx_new_fn)(const SSL_METHOD *);
typedef int (*use_chain_fn)(SSL_CTX *, const char *);
typedef int (*use_key_fn)(SSL_CTX *, const char *, int);
typedef int (*check_key_fn)(const SSL_CTX *);
typedef const SSL_METHOD *(*method_fn)(void);
typedef void (*print_errors_fn)(FILE *);

static void die(const char *what, const char *path) {
    print_errors_fn print_errors = (print_errors_fn)dlsym(RTLD_DEFAULT, "ERR_print_errors_fp");
    if (path != NULL)
        fprintf(stderr, TAG ": %s: %s\n", what, path);
    else
        fprintf(stderr, TAG ": %s\n", what);
    if (print_errors != NULL)
        print_errors(stderr);
    fflush(stderr);
    abort();
}

/* The real OpenSSL 3 symbol `name` after this library in the lookup order. */
static void *next_symbol(const char *name) {
    void *sym = dlvsym(RTLD_NEXT, name, "OPENSSL_3.0.0");
    if (sym == NULL)
        sym = dlsym(RTLD_NEXT, name);
    if (sym == NULL) {
        fprintf(stderr, TAG ": %s not found (is the program linked with OpenSSL 3's libssl?): %s\n",
                name, dlerror());
        fflush(stderr);
        abort();
    }
    return sym;
}

static ctx_new_fn real_ctx_new;
static use_chain_fn use_chain;
static use_key_fn use_key;
static check_key_fn check_key;
static method_fn tls_server_method;
static method_fn dtls_server_method;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve(void) {
    real_ctx_new = (ctx_new_fn)next_symbol("SSL_CTX_new");
    use_chain = (use_chain_fn)next_symbol("SSL_CTX_use_certificate_chain_file");
    use_key = (use_key_fn)next_symbol("SSL_CTX_use_PrivateKey_file");
    check_key = (check_key_fn)next_symbol("SSL_CTX_check_private_key");
    tls_server_method = (method_fn)next_symbol("TLS_server_method");
    dtls_server_method = (method_fn)next_symbol("DTLS_server_method");
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
    pthread_once(&resolved, resolve);
    SSL_CTX *ctx = real_ctx_new(method);
    if (ctx == NULL)
        return NULL;

    const char *cert = getenv(CERT_ENV);
    const char *key = getenv(KEY_ENV);
    int have_cert = cert != NULL && cert[0] != '\0';
    int have_key = key != NULL && key[0] != '\0';
    if (!have_cert && !have_key)
        return ctx;
    if (!have_cert || !have_key)
        die("set both " CERT_ENV " and " KEY_ENV " (or neither)", NULL);
    if (method == tls_server_method() || method == dtls_server_method())
        return ctx;

    if (use_chain(ctx, cert) != 1)
        die("cannot load the client certificate chain (" CERT_ENV ", PEM)", cert);
    if (use_key(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("cannot load the client private key (" KEY_ENV ", PEM)", key);
    if (check_key(ctx) != 1)
        die("the client private key does not match the certificate", key);
    return ctx;
}
