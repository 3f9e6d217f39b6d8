export * from './extension';
export * from './layer';
export * from './role';
export * from './settings';
export * from './starter-stack';
