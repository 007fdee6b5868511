/** A container's root filesystem as an overlay mount (through the addon: no `mount` program). */
import { SysError } from '../errors/roam-error.js';
import { isNativeError, native } from './native.js';

export interface OverlayLayers {
  /** the image: read-only, shared by every container made from it */
  lower: string;
  /** the container's own changes */
  upper: string;
  /** overlayfs's scratch space, on the same filesystem as upper */
  work: string;
}

export function mountOverlay(target: string, layers: OverlayLayers): void {
  try {
    native().mountOverlay(target, `lowerdir=${layers.lower},upperdir=${layers.upper},workdir=${layers.work}`);
  } catch (err) {
    if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op: 'overlay.mount', target }, { cause: err });
    throw err;
  }
}

/** Detaches what is mounted at `target`; nothing mounted there counts as done. */
export function unmount(target: string): void {
  try {
    native().unmount(target);
  } catch (err) {
    if (isNativeError(err)) throw new SysError({ errno: err.errno, syscall: err.syscall, op: 'unmount', target }, { cause: err });
    throw err;
  }
}
