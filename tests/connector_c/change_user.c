/* Drives Connector/C (libmariadb) through mysql_change_user() with its
 * caching_sha2_password plugin, for tests/proxy/caching_sha2.rs. Declares
 * the few functions it uses itself: only the runtime library is installed.
 *
 *   change_user PORT USER PASSWORD [USER PASSWORD]...
 *
 * Logs in, then changes to each further user in turn; after every step
 * prints the name of item 1, or "change_user error CODE" and stops. */
#include <stdio.h>
#include <stdlib.h>

typedef struct st_mysql MYSQL;
typedef struct st_mysql_res MYSQL_RES;
typedef char **MYSQL_ROW;
MYSQL *mysql_init(MYSQL *);
int mysql_options(MYSQL *, int, const void *);
MYSQL *mysql_real_connect(MYSQL *, const char *, const char *, const char *,
                          const char *, unsigned int, const char *,
                          unsigned long);
char mysql_change_user(MYSQL *, const char *, const char *, const char *);
int mysql_query(MYSQL *, const char *);
MYSQL_RES *mysql_store_result(MYSQL *);
MYSQL_ROW mysql_fetch_row(MYSQL_RES *);
void mysql_free_result(MYSQL_RES *);
unsigned int mysql_errno(MYSQL *);
void mysql_close(MYSQL *);

/* enum mysql_option: MYSQL_DEFAULT_AUTH, unchanged since MySQL 5.5. */
#define MYSQL_DEFAULT_AUTH 23

static void print_item(MYSQL *m) {
  MYSQL_RES *r;
  MYSQL_ROW row;
  if (mysql_query(m, "SELECT name FROM items WHERE id = 1")) {
    printf("query error %u\n", mysql_errno(m));
    exit(1);
  }
  r = mysql_store_result(m);
  row = r ? mysql_fetch_row(r) : NULL;
  printf("%s\n", row && row[0] ? row[0] : "(none)");
  if (r)
    mysql_free_result(r);
}

int main(int argc, char **argv) {
  MYSQL *m;
  int i;
  if (argc < 4)
    return 2;
  m = mysql_init(NULL);
  if (!m || mysql_options(m, MYSQL_DEFAULT_AUTH, "caching_sha2_password"))
    return 2;
  if (!mysql_real_connect(m, "127.0.0.1", argv[2], argv[3], NULL,
                          (unsigned int)atoi(argv[1]), NULL, 0)) {
    printf("connect error %u\n", mysql_errno(m));
    return 1;
  }
  print_item(m);
  for (i = 4; i + 1 < argc; i += 2) {
    if (mysql_change_user(m, argv[i], argv[i + 1], NULL)) {
      printf("change_user error %u\n", mysql_errno(m));
      return 0;
    }
    print_item(m);
  }
  mysql_close(m);
  return 0;
}
