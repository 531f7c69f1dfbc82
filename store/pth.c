/* torch.save archives: not read yet (the restricted unpickler is being written). */
#include "store/tensors_internal.h"

int pth_read(lvd_tensors *ts, const char *path, lvd_error *err)
{
    (void)ts;
    (void)path;
    return lvd_fail(err, "torch.save (.pth) files are not supported yet");
}
