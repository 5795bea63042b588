#include "base/status.h"

const char *status_str(enum status st)
{
    switch (st) {
    case STATUS_OK:           return "ok";
    case STATUS_EINVAL:       return "invalid argument";
    case STATUS_ENOMEM:       return "out of memory";
    case STATUS_EIO:          return "I/O error";
    case STATUS_EFORMAT:      return "malformed input";
    case STATUS_EUNSUPPORTED: return "unsupported";
    case STATUS_EDEVICE:      return "device error";
    case STATUS_ECANCELED:    return "canceled";
    case STATUS_ENOTFOUND:    return "not found";
    case STATUS_EBUSY:        return "busy";
    case STATUS_ETOOLONG:     return "too long";
    case STATUS_ETEMPLATE:    return "template error";
    case STATUS_EAUTH:        return "unauthorized";
    case STATUS_COUNT:        break;
    }
    return "unknown status";
}
