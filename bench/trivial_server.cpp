// placeholder replaced by the bench work
int main(){}
