/**
 * @module local-time
 * Local date and time in the fixed patterns TorchServe's Java side writes (SimpleDateFormat
 * letters): `yyyy MM dd HH mm ss SSS`; every other character is literal.
 */
export function formatLocalTime(d: Date, pattern: string): string {
  const fields: Record<string, number> = {
    yyyy: d.getFullYear(),
    MM: d.getMonth() + 1,
    dd: d.getDate(),
    HH: d.getHours(),
    mm: d.getMinutes(),
    ss: d.getSeconds(),
    SSS: d.getMilliseconds(),
  };
  return pattern.replace(/yyyy|MM|dd|HH|mm|ss|SSS/g, (token) => String(fields[token]).padStart(token.length, '0'));
}
