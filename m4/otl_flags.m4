# otl_flags.m4: compiler and linker flag probes for otlogin's configure.ac.
#
# The same job as autoconf-archive's AX_CHECK_COMPILE_FLAG / AX_APPEND_LINK_FLAGS, written
# here so that building from git needs no autoconf-archive. Each probe compiles (or links) a
# trivial program with the flag and -Werror: gcc rejects an unknown option outright, but clang
# only warns about an unknown -W or -f option, and a flag that merely warns would turn into an
# error the moment a build adds -Werror (./configure --enable-werror).

# OTL_APPEND_CFLAG(FLAG, VARIABLE): append FLAG to VARIABLE when $CC compiles with it.
AC_DEFUN([OTL_APPEND_CFLAG], [
  AS_VAR_PUSHDEF([otl_cache], [otl_cv_cflag_$1])
  AC_CACHE_CHECK([whether $CC accepts $1], [otl_cache], [
    otl_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS -Werror $1"
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
      [AS_VAR_SET([otl_cache], [yes])], [AS_VAR_SET([otl_cache], [no])])
    CFLAGS=$otl_save_CFLAGS])
  AS_VAR_IF([otl_cache], [yes], [$2="${$2:+$$2 }$1"])
  AS_VAR_POPDEF([otl_cache])
])

# OTL_APPEND_LDFLAG(FLAG, VARIABLE): append FLAG to VARIABLE when $CC links with it.
AC_DEFUN([OTL_APPEND_LDFLAG], [
  AS_VAR_PUSHDEF([otl_cache], [otl_cv_ldflag_$1])
  AC_CACHE_CHECK([whether $CC links with $1], [otl_cache], [
    otl_save_LDFLAGS=$LDFLAGS
    otl_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS -Werror"
    LDFLAGS="$LDFLAGS $1"
    AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])],
      [AS_VAR_SET([otl_cache], [yes])], [AS_VAR_SET([otl_cache], [no])])
    LDFLAGS=$otl_save_LDFLAGS
    CFLAGS=$otl_save_CFLAGS])
  AS_VAR_IF([otl_cache], [yes], [$2="${$2:+$$2 }$1"])
  AS_VAR_POPDEF([otl_cache])
])
