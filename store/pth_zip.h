/* Locating stored (uncompressed) entries inside a memory-mapped zip archive, so torch.save
 * storages can be used in place instead of being copied through libzip (internal to store/).
 *
 * libzip (which validates the archive) does not expose where an entry's data starts; this reads
 * the central directory (zip64 included) and local headers just far enough to find it. Any
 * inconsistency makes it give up (-1), and the caller then reads through libzip. */
#ifndef LVD_STORE_PTH_ZIP_H
#define LVD_STORE_PTH_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct zip_span {
    const uint8_t *name; /* not NUL-terminated: name_len bytes inside the image */
    size_t name_len;
    uint16_t method; /* 0: stored */
    uint64_t comp_size, size, local_offset;
} zip_span;

/* The central directory entries of the archive image file[0..len), in directory order (the
 * order of libzip's indexes). 0, or -1 when the directory cannot be read. Free *out. */
int zip_central_directory(const uint8_t *file, size_t len, zip_span **out, size_t *n);

/* Byte offset of a stored entry's data in the image after checking its local header (signature,
 * method, name) and that the data lies inside the image; -1 otherwise. */
int64_t zip_stored_data(const uint8_t *file, size_t len, const zip_span *span);

#endif
