/*  dpool_clock: monotonic milliseconds, the one time base for every deadline.
    Pure modules (the scheduler) take time as a parameter; only the edges call this. */
#ifndef DPOOL_CLOCK_H
#define DPOOL_CLOCK_H

#include <stdint.h>

// Milliseconds from an arbitrary fixed point (CLOCK_MONOTONIC).
int64_t dpool_clock_ms(void);

// Microseconds from the same point, for timings inside one process.
int64_t dpool_clock_us(void);

// Seconds since the Unix epoch as a double, for timestamps that cross processes.
double dpool_clock_wall(void);

#endif
