/* libjpeg error handling shared by the JPEG decoder and encoder: every error, and every warning
 * that means pixel data was lost, jumps back to the caller's setjmp with the message kept. */
#ifndef LVD_IMAGE_JPEG_ERR_H
#define LVD_IMAGE_JPEG_ERR_H

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

typedef struct lvd_jpeg_err {
    struct jpeg_error_mgr pub; /* first member: libjpeg sees only this */
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
} lvd_jpeg_err;

/* Fills je and returns the jpeg_error_mgr to store in cinfo->err. */
struct jpeg_error_mgr *lvd_jpeg_err_init(lvd_jpeg_err *je);

#endif
