/* The libjpeg error manager of image/jpeg_err.h: messages kept, no exit. */
#include "image/jpeg_err.h"

#include <jerror.h>

static void jpeg_err_exit(j_common_ptr cinfo)
{
    lvd_jpeg_err *je = (lvd_jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, je->msg);
    longjmp(je->jmp, 1);
}

/* Metadata warnings leave the pixels intact; every other warning (premature end of file, corrupt
 * entropy data, bad progression) means libjpeg would fill the rest with gray. */
static int warning_is_benign(int code)
{
    return code == JWRN_ADOBE_XFORM || code == JWRN_JFIF_MAJOR || code == JWRN_BOGUS_ICC;
}

static void jpeg_err_emit(j_common_ptr cinfo, int msg_level)
{
    if (msg_level >= 0 || warning_is_benign(cinfo->err->msg_code))
        return;
    jpeg_err_exit(cinfo);
}

static void jpeg_err_output(j_common_ptr cinfo)
{
    (void)cinfo; /* never print to stderr: errors reach the caller through lvd_error */
}

struct jpeg_error_mgr *lvd_jpeg_err_init(lvd_jpeg_err *je)
{
    struct jpeg_error_mgr *mgr = jpeg_std_error(&je->pub);
    mgr->error_exit = jpeg_err_exit;
    mgr->emit_message = jpeg_err_emit;
    mgr->output_message = jpeg_err_output;
    je->msg[0] = '\0';
    return mgr;
}
