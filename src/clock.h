/*
 * clock: elapsed time on the monotonic clock, for deadlines and budgets, and the wall clock in
 * milliseconds, for the users API's timestamps.
 */
#ifndef OTLOGIN_CLOCK_H
#define OTLOGIN_CLOCK_H

#include <time.h>

/* Milliseconds since *t0 (taken with clock_gettime(CLOCK_MONOTONIC)). */
static inline long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t0->tv_sec) * 1000L + (now.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* Milliseconds on the monotonic clock (since boot): comparable between processes. */
static inline unsigned long long clock_mono_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (unsigned long long)now.tv_sec * 1000u + (unsigned long long)now.tv_nsec / 1000000u;
}

/* Milliseconds since the epoch (wall clock). */
static inline long long clock_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

#endif
