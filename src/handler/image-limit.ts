/**
 * @module handler/image-limit
 * limit_max_image_pixels, as TorchServe's vision handler applies it to PIL: true (the default)
 * refuses an image above PIL's decompression-bomb limit before decoding it, false lifts every
 * limit. Process-wide, as PIL's setting is: the worker sets it when it loads its model, and
 * tsserve/vision's decoders read it.
 */

/** PIL refuses an image above twice its MAX_IMAGE_PIXELS (89,478,485) with DecompressionBombError. */
export const PIL_PIXEL_LIMIT = 2 * 89_478_485;

let limited = true;

export function setImagePixelLimit(on: boolean): void {
  limited = on;
}

/** The most pixels an image may have, or false when limit_max_image_pixels is false. */
export function imagePixelLimit(): number | false {
  return limited ? PIL_PIXEL_LIMIT : false;
}
