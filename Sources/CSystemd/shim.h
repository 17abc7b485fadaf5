#ifndef NODENET_CSYSTEMD_H
#define NODENET_CSYSTEMD_H
#include <systemd/sd-daemon.h>
#endif
