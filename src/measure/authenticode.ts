import {createHash} from 'node:crypto'

import {InputError} from '../errors.js'
import {parsePe} from '../disk/pe.js'

/**
 * The Authenticode (PE image) SHA-256 of a PE file, computed as UEFI firmware does when it
 * measures an image it loads (edk2's MeasurePeImageAndExtend, the steps of Microsoft's
 * Authenticode PE specification; docs/pcr-measurements.md "Authenticode"):
 *
 * 1. the headers up to the optional header's CheckSum, then from after it up to the certificate
 *    table's data directory entry, then from after that entry to SizeOfHeaders (without that entry,
 *    everything after CheckSum up to SizeOfHeaders);
 * 2. every section with raw data, sorted by PointerToRawData, SizeOfRawData bytes each;
 * 3. whatever the file holds past those bytes (counted from offset sum-of-bytes-hashed), less the
 *    certificate table's size.
 *
 * The file is hashed as it is: signing tools (osslsigncode, sbsign, pesign) first pad an unsigned
 * file to 8 bytes and hash the padding too, firmware measuring the unsigned file does not.
 */
export function authenticodeSha256(image: Buffer, what = 'the PE image'): Buffer {
  const h = parsePe(image, what)
  const hash = createHash('sha256')
  if (h.sizeOfHeaders > image.length) throw new InputError(`${what}: SizeOfHeaders 0x${h.sizeOfHeaders.toString(16)} is past the end of the file`)
  const afterChecksum = h.checksumOffset + 4
  if (h.certDirectoryOffset === undefined) {
    hash.update(image.subarray(0, h.checksumOffset))
    hash.update(image.subarray(afterChecksum, Math.max(afterChecksum, h.sizeOfHeaders)))
  } else {
    if (h.certDirectoryOffset + 8 > h.sizeOfHeaders) throw new InputError(`${what}: its data directories end past SizeOfHeaders`)
    hash.update(image.subarray(0, h.checksumOffset))
    hash.update(image.subarray(afterChecksum, h.certDirectoryOffset))
    hash.update(image.subarray(h.certDirectoryOffset + 8, h.sizeOfHeaders))
  }
  let hashed = h.sizeOfHeaders
  // a stable sort by file offset, as edk2's insertion sort leaves sections of equal offset in table order
  const sections = h.sections.map((s, i) => ({s, i})).sort((a, b) => a.s.pointerToRawData - b.s.pointerToRawData || a.i - b.i)
  for (const {s} of sections) {
    if (s.sizeOfRawData === 0) continue
    if (s.pointerToRawData + s.sizeOfRawData > image.length) {
      throw new InputError(`${what}: section ${s.name}'s raw data (0x${s.pointerToRawData.toString(16)}+0x${s.sizeOfRawData.toString(16)}) runs past the end of the file`)
    }
    hash.update(image.subarray(s.pointerToRawData, s.pointerToRawData + s.sizeOfRawData))
    hashed += s.sizeOfRawData
  }
  if (image.length > hashed) {
    const certSize = h.certDirectoryOffset === undefined ? 0 : h.certTableSize
    if (image.length < hashed + certSize) throw new InputError(`${what}: its certificate table (${certSize} bytes) is larger than what follows its sections`)
    hash.update(image.subarray(hashed, image.length - certSize))
  }
  return hash.digest()
}
